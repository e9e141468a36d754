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

from msff import config
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
def zero_shot(tmp_path_factory):
    """One call over a real video and a file that is not one, in a folder with no results/."""
    work = tmp_path_factory.mktemp("predict")
    bad = work / "broken.mp4"
    bad.write_text("not a video")
    proc = msff_predict(
        work, VIDEO, bad, "--per-frame", "frames.tsv", "--out", "clips.json", "--device", "cpu"
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


def test_without_results_it_says_zero_shot_and_prints_a_line_per_file(zero_shot):
    work, proc = zero_shot
    assert "zero-shot" in proc.stderr and "not trained on your data" in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    path, label, models, scores = lines[0].split("\t")
    assert path == str(VIDEO) and models == "models: fer2013_zeroshot"
    assert label == "happy"  # the actor smiles through the clip
    assert lines[1].startswith(f"{work / 'broken.mp4'}\terror: ")
    assert "2 files: 1 predicted (zero-shot, on cpu), 1 could not be read" in proc.stderr


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


def test_the_clip_table_holds_the_clip_scores_and_the_error(zero_shot, reference):
    work, proc = zero_shot
    _, _, probs, classes = reference
    table = json.loads((work / "clips.json").read_text())
    assert [row["path"] for row in table] == [str(VIDEO), str(work / "broken.mp4")]
    clip, bad = table
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
