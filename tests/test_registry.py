"""The model registry: one entry names a model for the DAG, the schema, fusion and predict."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from msff import config, registry

from .conftest import CKPLUS, REPO

TOY = '''
"""A toy frame backbone: registered in one line of msff/registry.py, nothing else."""

import torch
import torch.nn.functional as F
from torch import nn

from msff.models.build import Built, rgb_input


class Toy(nn.Module):
    def __init__(self, num_classes=7, fc_width=16):
        super().__init__()
        self.num_classes, self.fc_width = num_classes, fc_width
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc6 = nn.Linear(4, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)

    def blocks_in_order(self):
        return [self.conv]

    def features(self, x):
        return F.relu(self.fc6(F.relu(self.conv(x)).mean((2, 3))))

    def classify(self, features):
        return self.fc8(features)

    def forward(self, x):
        return self.classify(self.features(x))


def build(num_classes, fc_width, weights, train_blocks=0):
    model = Toy(num_classes, fc_width)
    return Built(model, rgb_input(lambda x: x / 255.0), "toy: from scratch", False)
'''


def test_every_model_is_named_once_and_a_config_turns_them_on(repo_config):
    names = [m.name for m in registry.every_model()]
    assert len(names) == len(set(names))
    assert {"fer2013_frames", "fer2013_blstm", "c3d", "hog_svm", "opensmile_svm"} <= set(names)
    on = registry.models(repo_config["models"])
    assert [m.name for m in on][:2] == ["fer2013_frames", "fer2013_blstm"]
    for model in on:
        assert registry.model(model.name) == model
        assert model.needs in (registry.FACES, registry.SPECTROGRAMS, registry.OPENSMILE)
    with pytest.raises(KeyError, match="no model 'nope'"):
        registry.model("nope")


def test_the_schema_takes_its_enums_from_the_registry(repo_config):
    schema = config.schema("config")
    backbones = schema["properties"]["models"]["properties"]["face_backbones"]["items"]["enum"]
    assert backbones == list(registry.FRAME_BACKBONES)
    bad = yaml.safe_load(yaml.safe_dump(repo_config))
    bad["models"]["face_backbones"] = ["alexnet"]
    with pytest.raises(config.ConfigError, match="models/face_backbones/0: 'alexnet'"):
        config.validate(bad, "config", "config.yaml")


@pytest.fixture(scope="module")
def toy_repo(tmp_path_factory):
    """A copy of the project with a toy backbone registered in msff/registry.py."""
    root = tmp_path_factory.mktemp("toy")
    repo = root / "repo"
    repo.mkdir()
    for name in ("Snakefile", "config.yaml", "demo"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, repo / name)
    for name in ("workflow", "envs", "msff"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "msff" / "models" / "toy.py").write_text(TOY)
    source = (repo / "msff" / "registry.py").read_text()
    entry = '    "resnet50": "msff.models.resnet",\n'
    assert entry in source
    (repo / "msff" / "registry.py").write_text(
        source.replace(entry, entry + '    "toy": "msff.models.toy",\n')
    )
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg["models"]["face_backbones"] = ["fer2013", "toy"]
    cfg["fusion"]["models"] = ["toy_blstm", "opensmile_svm"]
    (repo / "config.yaml").write_text(yaml.safe_dump(cfg))
    return repo


def in_copy(repo, code: str) -> subprocess.CompletedProcess:
    """Run Python code with the copy's msff on the path."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=repo,
        env={"PYTHONPATH": str(repo), "PATH": str(REPO / ".venv" / "bin") + ":/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_a_registered_backbone_is_in_the_schema_the_dag_and_fusion(toy_repo):
    proc = in_copy(
        toy_repo,
        """
        from msff import config, registry
        cfg = config.load("config.yaml")  # validated: toy and toy_blstm are enum values now
        print([m.name for m in registry.models(cfg["models"])])
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "'toy_frames', 'toy_blstm'" in proc.stdout
    dag = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", "Snakefile"],
        cwd=toy_repo,
        env={"PYTHONPATH": str(toy_repo), "PATH": str(REPO / ".venv" / "bin") + ":/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert dag.returncode == 0, dag.stderr[-3000:]
    out = dag.stdout
    for rule in ("finetune_cnn", "train_blstm"):
        assert f"rule {rule}:" in out
    assert "results/models/toy_cnn.pt" in out and "results/scores/toy_blstm.tsv" in out
    fuse = out.split("rule fuse:", 1)[1].split("rule ", 1)[0]
    assert "results/scores/toy_blstm.tsv" in fuse  # fusion reads the new model's scores
    # The new backbone's rules run its own code: toy.py is an input of its frame CNN only.
    assert "msff/models/toy.py" in out.split("rule finetune_cnn:", 1)[1]


def test_a_registered_backbone_trains_and_predict_scores_with_it(toy_repo, tmp_path):
    """Through the same head functions as the rules, then msff predict on a CK+ folder."""
    proc = in_copy(
        toy_repo,
        f"""
        import json
        from pathlib import Path
        from msff import config
        from msff.heads.blstm import train_blstm
        from msff.heads.frame_cnn import finetune_cnn
        from msff.predict import predict
        from msff.stages.faces import precropped_faces
        from msff.stages.media import extract_frames

        ck = Path({str(CKPLUS)!r})
        work = Path({str(tmp_path)!r})
        clips, faces = [], {{}}
        for i, (seq, label) in enumerate([("S010_002", "surprise"), ("S042_002", "sad"),
                                          ("S014_002", "sad"), ("S034_005", "happy")]):
            extract_frames(seq, str(ck / seq), work / f"{{seq}}.frames.h5", None, None)
            faces[seq] = str(work / f"{{seq}}.h5")
            precropped_faces(seq, work / f"{{seq}}.frames.h5", faces[seq], 64)
            clips.append(dict(clip=seq, split="train" if i < 3 else "val", speaker=seq[:4])
                         | {{"class": label}})
        cfg = config.load("config.yaml")
        classes = cfg["labels"]["classes"]
        settings = dict(epochs=1, seed=0)
        models = work / "results" / "models"
        finetune_cnn("toy", clips, faces, models / "toy_cnn.pt", work / "c.json",
                     work / "frames.tsv", classes, settings, fc_width=16, crop=56,
                     max_train_frames=None, weights=None, out_features=work / "toy.h5")
        train_blstm(work / "toy.h5", clips, work / "b.tsv", models / "toy_blstm.pt",
                    work / "b.json", classes, settings, hidden=4, window=8, stride=4,
                    unseen_note="no face")
        (work / "results" / "fusion").mkdir()
        (work / "results" / "fusion" / "weights.json").write_text(
            json.dumps({{"models": ["toy_blstm"], "weights": {{"toy_blstm": 1.0}}}}))
        result = predict(ck / "S010_002", work / "results", dict(cfg, face_input="precropped"))
        print(result["models_used"], result["label"] in classes)
        """,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "['toy_blstm'] True" in proc.stdout
