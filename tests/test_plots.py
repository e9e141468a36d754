"""The report's figures, drawn from files the stages write on real speech.

Two small nets are trained briefly on four real RAVDESS clips (see test_checkpoint.py), their
provenance and scores written; the fusion, Table 1 and the qc table (with a missing clip and
an excluded one) come from the real stages. Each figure must show what those files hold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from msff import plots, scores, train
from msff.stages.faces import precropped_faces
from msff.stages.fuse import evaluate_all, fuse
from msff.stages.media import extract_audio, extract_frames
from msff.stages.qc import qc_table

from .conftest import CKPLUS, REPO
from .test_checkpoint import SETTINGS, caches, datasets, run  # noqa: F401 - caches: fixture

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SHORT = train.TrainSettings(**{**vars(SETTINGS), "epochs": 3, "patience": 3})


@pytest.fixture(scope="module")
def outputs(caches, tmp_path_factory):  # noqa: F811 - the fixture imported above
    folder = tmp_path_factory.mktemp("plots")
    labels = sorted(caches)
    clips = [
        {"clip": str(k), "class": CLASSES[k], "split": s, "speaker": "03"}
        for k, s in zip(labels, ["val", "val", "test", "test"], strict=True)
    ]
    provenance, score_paths = {}, {}
    for name, seed in (("tiny_a", 1), ("tiny_b", 2)):
        settings = train.TrainSettings(**{**vars(SHORT), "seed": seed})
        started = time.time()
        model, history = run(caches, settings=settings)
        provenance[name] = folder / f"{name}.json"
        train.write_provenance(
            provenance[name],
            config={},
            settings=settings,
            history=history,
            started=started,
            finished=time.time(),
            weights={},
            device=torch.device("cpu"),
        )
        val_set = datasets(caches)[1]
        rows, _ = train.clip_means(
            train.predict(model, val_set, torch.device("cpu")), val_set.owner, len(clips)
        )
        score_paths[name] = str(folder / f"{name}.tsv")
        scores.write(
            score_paths[name],
            [c["clip"] for c in clips],
            [c["split"] for c in clips],
            rows,
            CLASSES,
        )
    weights = folder / "weights.json"
    fuse(
        score_paths,
        clips,
        CLASSES,
        0.1,
        1,
        0,
        str(weights),
        str(folder / "fusion.tsv"),
        str(folder / "predictions.tsv"),
    )
    ck_frames, ck_faces = folder / "ck.frames.h5", folder / "ck.h5"  # real face crops (CK+48)
    assert extract_frames("ck", str(CKPLUS / "S014_001"), ck_frames, None, None) == ""
    assert precropped_faces("ck", ck_frames, ck_faces, 48) == ""
    missing = folder / "missing.audio.h5"
    assert extract_audio("missing", str(folder / "nothing.flac"), missing, 16000, -60) != ""
    sheet = [
        *clips,
        {"clip": "missing", "class": "sad", "split": "test", "speaker": "04"},
        {"clip": "ck", "class": "sad", "split": "train", "speaker": "S014"},
        {"clip": "calm", "class": "", "split": "val", "speaker": "04", "excluded": "calm dropped"},
    ]
    sheet[-1]["label"] = "calm"
    for c in sheet:
        c.setdefault("label", c["class"])
    caches_of = {str(k): {"audio": str(caches[k]).replace(".h5", ".audio.h5")} for k in labels}
    caches_of["missing"] = {"audio": str(missing)}
    caches_of["ck"] = {"faces": str(ck_faces)}
    qc = folder / "qc.tsv"
    qc_table(sheet, caches_of, qc)
    table1 = folder / "table1.tsv"
    evaluate_all(
        {**score_paths, "fusion": str(folder / "fusion.tsv")},
        list(score_paths),
        clips,
        CLASSES,
        0.1,
        str(qc),
        str(table1),
        str(folder / "table2.tsv"),
        str(folder / "confusion"),
    )
    return dict(folder=folder, provenance=provenance, weights=weights, qc=qc, table1=table1)


def drawn(path) -> None:
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 500
    assert image.std() > 10  # not a blank page


def test_training_curves_show_each_model_history_and_best_epoch(outputs):
    out = outputs["folder"] / "curves.png"
    figure = plots.training_curves(outputs["provenance"], out)
    drawn(out)
    assert len(figure.axes) == 4  # loss and accuracy of two models
    for k, (name, path) in enumerate(outputs["provenance"].items()):
        history = json.loads(path.read_text())["history"]
        loss, acc = figure.axes[2 * k], figure.axes[2 * k + 1]
        assert loss.get_title() == f"{name}: loss"
        lines = {line.get_label(): line for line in loss.get_lines()}
        assert list(lines["train"].get_ydata()) == [e["train_loss"] for e in history["epochs"]]
        assert list(lines["val"].get_ydata()) == [e["val_loss"] for e in history["epochs"]]
        best = lines[f"best ({history['best_epoch']})"]
        assert list(best.get_xdata()) == [history["best_epoch"]] * 2
        acc_lines = {line.get_label(): line for line in acc.get_lines()}
        assert list(acc_lines["val"].get_ydata()) == [e["val_acc"] for e in history["epochs"]]


def test_class_recall_puts_every_model_and_the_fusion_side_by_side(outputs):
    out = outputs["folder"] / "recall.png"
    figure = plots.class_recall(outputs["table1"], out)
    drawn(out)
    assert [ax.get_title() for ax in figure.axes] == [
        "per-class recall, val (3 models)",
        "per-class recall, test (3 models)",
    ]
    val, test = figure.axes
    # Only the classes the split has clips of: angry, happy in val; sad, surprise in test.
    assert [t.get_text() for t in val.get_xticklabels()] == ["angry", "happy"]
    assert [t.get_text() for t in test.get_xticklabels()] == ["sad", "surprise"]
    assert len(val.patches) == 3 * 2
    table = pd.read_csv(outputs["table1"], sep="\t")
    fusion = table[(table.model == "fusion") & (table.split == "val")].iloc[0]
    heights = [p.get_height() for p in val.patches][4:]  # bars drawn model by model
    assert heights == [fusion.recall_angry, fusion.recall_happy]
    legend = [t.get_text() for t in val.get_legend().get_texts()]
    assert [entry.split(" (")[0] for entry in legend] == ["tiny_a", "tiny_b", "fusion"]


def test_fusion_weights_and_qc_overview(outputs):
    record = json.loads(outputs["weights"].read_text())
    out = outputs["folder"] / "weights.png"
    figure = plots.fusion_weights(outputs["weights"], out)
    drawn(out)
    bars = [p.get_width() for p in figure.axes[0].patches]
    assert bars == pytest.approx([record["weights"]["tiny_a"], record["weights"]["tiny_b"]])
    title = figure.axes[0].get_title()
    assert f"{record['val_accuracy']:.3f}" in title
    assert f"searched on {record['n_search_clips']} {record['searched_on']} clips" in title

    out = outputs["folder"] / "qc.png"
    figure = plots.qc_overview(outputs["qc"], out)
    drawn(out)
    text = figure.axes[1].texts[0].get_text()
    assert text.splitlines()[0] in ("5 ok, 1 error, 1 excluded", "5 ok, 1 excluded, 1 error")
    coverage = figure.axes[0]
    assert coverage.get_title() == "face coverage, 1 clips with video"
    assert [p.get_height() for p in coverage.patches] == [0] * 9 + [1]  # CK+: 100 %
    assert (
        "missing: error: audio: clip missing: " in text and "calm: excluded: calm dropped" in text
    )
    assert max(len(line) for line in text.splitlines()) <= 90


def test_rule_plots_draws_the_figures_into_the_report(outputs, tmp_path):
    """The plots rule on the files above (its upstream rules not run: --allowed-rules)."""
    work = tmp_path / "work"
    for name in ("fer2013_cnn", "fer2013_blstm", "c3d", "vgg19_audio_cnn", "vgg19_blstm_audio"):
        path = work / "results" / "models" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(outputs["provenance"]["tiny_a"], path)
    for key, target in (
        ("table1", "evaluation/table1.tsv"),
        ("weights", "fusion/weights.json"),
        ("qc", "qc.tsv"),
    ):
        (work / "results" / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(outputs[key], work / "results" / target)
    names = ("training_curves", "class_recall", "fusion_weights", "qc")
    figures = [f"results/plots/{name}.png" for name in names]
    base = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(REPO / "config.yaml"),
        "--allowed-rules",
        "plots",
    ]
    config = ["--config", f"samples={REPO / 'demo' / 'clips.tsv'}"]
    for args in (["--cores", "1", *figures], ["--report", str(work / "report.html"), *figures]):
        proc = subprocess.run([*base, *args, *config], capture_output=True, text=True, cwd=work)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for figure in figures:
        drawn(work / figure)
    # The job's log holds what msff says, not Snakemake's job header with its inputs.
    assert "results/" not in (work / "logs" / "plots.log").read_text()
    html = (work / "report.html").read_text()
    for figure in figures:
        assert f"filename={Path(figure).name}" in html, figure
