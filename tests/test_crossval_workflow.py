"""`snakemake crossval`: folds as wildcards of the face models' own rules, on real CK+ faces."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import CKPLUS, REPO

pytestmark = pytest.mark.workflow
FOLDS = 3
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SUBJECTS = 9  # 3 test subjects a fold, and 6 left for 3 inner folds (validation)
TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.run([*cmd, "crossval", *args, "--cores", "2"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def span(log: Path) -> tuple[datetime, datetime]:
    """When a job's log says it started and when it last wrote."""
    stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t in TIME.findall(log.read_text())]
    return stamps[0], stamps[-1]


@pytest.fixture(scope="module")
def crossval_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("crossval")
    with open(CKPLUS / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] != "contempt"]
    subjects = sorted({r["speaker"] for r in rows})[:SUBJECTS]
    sheet = pd.DataFrame(
        [
            dict(clip=r["path"], path=str(CKPLUS / r["path"]), label=r["label"])
            | dict(split="train", speaker=r["speaker"], face_input="precropped")
            for r in rows
            if r["speaker"] in subjects
        ]
    )
    sheet.to_csv(work / "clips.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    config["crossval"]["folds"] = FOLDS
    # No card here: the training jobs ask for none, so two folds train side by side on 2 cores
    # (with the default 1, the workstation profile's one card would queue them).
    config["gpus_per_job"] = 0
    config["presets"]["cpu"]["models"]["epochs"] = 1  # the DAG, not accuracy, is tested
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    first = snakemake(work)
    return work, first, sheet


def test_one_job_per_fold_and_model_and_every_clip_scored_once(crossval_run):
    work, first, sheet = crossval_run
    stats = (first.stdout + first.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line}
    for rule in ("finetune_cnn", "train_blstm", "train_c3d", "train_hog_svm"):
        assert counts[f"fold_{rule}"] == FOLDS, counts
    assert counts["crossval_zeroshot"] == counts["crossval"] == 1
    metrics = pd.read_csv(work / "results" / "crossval" / "metrics.tsv", sep="\t")
    names = ["fer2013_zeroshot", "fer2013_frames", "fer2013_blstm", "c3d", "hog_svm"]
    names.append("face_fusion")
    assert list(metrics["model"]) == names
    assert (metrics["folds"] == FOLDS).all()
    trained = metrics[metrics["model"] != "face_fusion"]  # fusion: milliseconds, rounded to 0
    assert (trained["seconds"] > 0).all()
    folds = pd.read_csv(work / "results" / "crossval" / "folds.tsv", sep="\t", dtype=str)
    assert folds.groupby("speaker")["fold"].nunique().max() == 1  # a subject in one fold
    # The face fusion weighs what the workflow's fusion weighs: of the face models, the cpu
    # preset fuses the frame CNN, the BLSTM and HOG + SVM (not C3D); each fold's fused
    # scores are the weighted sum of theirs with the weights that fold logged.
    log_text = (work / "logs" / "crossval.log").read_text()
    weighed = dict(re.findall(r"fold (\d+): fusion weights (\{.*?\})", log_text))
    assert sorted(weighed) == [str(k) for k in range(FOLDS)]
    fused = ["fer2013_frames", "fer2013_blstm", "hog_svm"]
    oof = {
        name: pd.read_csv(work / "results/crossval/scores" / f"{name}.tsv", sep="\t")
        .astype({"clip": str})
        .set_index("clip")[CLASSES]
        for name in [*fused, "face_fusion"]
    }
    fold_of = folds.astype({"clip": str}).set_index("clip")["fold"]
    for k, text in weighed.items():
        weights = yaml.safe_load(text)
        assert sorted(weights) == sorted(fused), weights
        clips = fold_of.index[fold_of == k]
        # The log rounds to 3 decimals (1/3 -> 0.333): the sum of the weights undoes that.
        total = sum(weights.values())
        expected = sum(weights[name] / total * oof[name].loc[clips] for name in fused)
        np.testing.assert_allclose(oof["face_fusion"].loc[clips], expected, atol=1e-5)
    for name in names:
        table = pd.read_csv(
            work / "results" / "crossval" / "scores" / f"{name}.tsv", sep="\t", dtype={"clip": str}
        )
        assert sorted(table["clip"]) == sorted(sheet["clip"])  # every clip, once


def test_folds_train_side_by_side(crossval_run):
    work, _, _ = crossval_run
    jobs = {
        log.relative_to(work / "logs" / "crossval").parts: span(log)
        for log in (work / "logs" / "crossval").glob("fold*/**/*.log")
    }
    assert len(jobs) == 4 * FOLDS  # finetune_cnn, train_blstm, train_c3d, train_hog_svm
    # With 2 cores and one thread a fold job, jobs of different folds overlapped in time.
    overlapping = [
        (a, b)
        for a, (a0, a1) in jobs.items()
        for b, (b0, b1) in jobs.items()
        if a[0] < b[0] and a0 < b1 and b0 < a1
    ]
    assert overlapping, jobs


def test_a_deleted_fold_model_reruns_that_fold_only(crossval_run):
    work, _, _ = crossval_run
    logs = {p: p.stat().st_mtime_ns for p in (work / "logs").rglob("*.log")}
    (work / "results" / "crossval" / "fold1" / "models" / "fer2013_cnn.pt").unlink()
    # Snakemake 9 leaves a target whose outputs are present alone even when an input is
    # gone (as after temp() files); asked for, the model is made again, then what reads it.
    snakemake(work, "results/crossval/fold1/models/fer2013_cnn.pt")
    rerun = sorted(
        str(p.relative_to(work / "logs")) for p, t in logs.items() if p.stat().st_mtime_ns != t
    )
    assert rerun == [
        "crossval.log",
        "crossval/fold1/finetune_cnn/fer2013.log",
        "crossval/fold1/train_blstm/fer2013.log",
    ]
