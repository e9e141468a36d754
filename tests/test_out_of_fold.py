"""fusion.out_of_fold: the fusion weights searched on out-of-fold scores of train + val.

The folds on real CK+ subjects, then the workflow on real CK+ faces: the fold trainings
are the models' own rules, every train and validation clip is scored once by a model that
never saw its subject, and the fusion searches, fuses and tabulates on those scores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from msff import folds, fusion, scores
from msff.errors import ConfigError
from msff.stages.fuse import out_of_fold_scores

from .conftest import CKPLUS, REPO

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SUBJECTS = 12  # 6 train, 3 validation, 3 test
SPLITS = ("train", "val", "test")
FUSED = ["fer2013_frames", "fer2013_blstm", "fer2013_zeroshot"]


def ckplus_records(n_subjects: int) -> list[dict]:
    """CK+ sequences of the first subjects (contempt dropped), split by subject 6 : 3 : 3."""
    with open(CKPLUS / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] != "contempt"]
    subjects = sorted({r["speaker"] for r in rows})[:n_subjects]
    split = {s: "train" if i < n_subjects // 2 else "val" for i, s in enumerate(subjects)}
    for s in subjects[-n_subjects // 4 :]:
        split[s] = "test"
    return [
        dict(clip=r["path"], label=r["label"], speaker=r["speaker"], split=split[r["speaker"]])
        | {"class": r["label"]}
        for r in rows
        if r["speaker"] in subjects
    ]


def test_out_of_fold_trainings_hold_each_subject_out_once_and_leave_test_out():
    records = ckplus_records(30)
    pool = {r["clip"] for r in records if r["split"] != "test"}
    trainings = folds.out_of_fold_records(records, CLASSES, 3, seed=2018)
    held = [r["clip"] for t in trainings for r in t if r["split"] == "test"]
    assert sorted(held) == sorted(pool)  # every train and val clip scored once, no test clip
    for training in trainings:
        assert {r["clip"] for r in training} == pool
        by_split = {s: {r["speaker"] for r in training if r["split"] == s} for s in SPLITS}
        assert by_split["train"] and by_split["val"] and by_split["test"]
        assert not by_split["test"] & (by_split["train"] | by_split["val"])
        assert not by_split["train"] & by_split["val"]
    assert trainings == folds.out_of_fold_records(records, CLASSES, 3, seed=2018)


def test_too_few_subjects_for_the_folds_is_a_config_error():
    records = ckplus_records(4)  # 2 train, 1 val: 3 folds of 1 subject leave 2 for the rest
    with pytest.raises(ConfigError, match="fusion.out_of_fold: 3 trainings .* subjects"):
        folds.out_of_fold_records(records, CLASSES, 3, seed=2018)


def write_fold(path: Path, rows: dict[str, str]) -> str:
    """A scores file whose clips have the given splits (uniform scores: only rows matter)."""
    clips = list(rows)
    scores.write(path, clips, [rows[c] for c in clips], scores.uniform(len(clips), 7), CLASSES)
    return str(path)


def test_out_of_fold_rows_missing_or_held_out_twice_name_the_files(tmp_path):
    a = write_fold(tmp_path / "a.tsv", {"c1": "test", "c2": "train"})
    b = write_fold(tmp_path / "b.tsv", {"c1": "train", "c2": "test"})
    assert out_of_fold_scores([a, b], ["c2", "c1"], CLASSES).shape == (2, 7)
    with pytest.raises(ConfigError, match=r"no out-of-fold scores for clips \['c3'\]"):
        out_of_fold_scores([a, b], ["c1", "c2", "c3"], CLASSES)
    twice = write_fold(tmp_path / "twice.tsv", {"c1": "test"})
    with pytest.raises(ConfigError, match="twice.tsv: clip 'c1' is held out in .*a.tsv"):
        out_of_fold_scores([a, b, twice], ["c1", "c2"], CLASSES)


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.run([*cmd, *args, "--cores", "2"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    stats = (proc.stdout + proc.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line}


def write_config(work: Path, out_of_fold: int) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    config["gpus_per_job"] = 0  # no card here: fold jobs run side by side on the cores
    config["models"].update(zeroshot=True, c3d=False, audio_cnn=False, opensmile_svm=False)
    # The search (the cpu preset weighs its models equally, which needs no search clips).
    config["fusion"].update(models=FUSED, out_of_fold=out_of_fold, rule="auto")
    config["presets"]["cpu"]["models"]["epochs"] = 1  # the DAG, not accuracy, is tested
    (work / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def out_of_fold_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("out_of_fold")
    records = ckplus_records(SUBJECTS)
    sheet = pd.DataFrame(
        [
            dict(clip=r["clip"], path=str(CKPLUS / r["clip"]), label=r["label"])
            | dict(split=r["split"], speaker=r["speaker"], face_input="precropped")
            for r in records
        ]
    )
    sheet.to_csv(work / "clips.tsv", sep="\t", index=False)
    write_config(work, out_of_fold=2)
    return work, snakemake(work), sheet


def read_scores(path: Path) -> pd.DataFrame:
    return scores.read(path, CLASSES)


@pytest.mark.workflow
def test_fused_models_train_once_per_fold_and_the_untrained_one_not_at_all(out_of_fold_run):
    work, first, _ = out_of_fold_run
    counts = job_counts(first)
    assert counts["fold_finetune_cnn"] == counts["fold_train_blstm"] == 2, counts
    assert counts["finetune_cnn"] == counts["train_blstm"] == counts["zeroshot_scores"] == 1
    assert not (
        work / "results" / "out_of_fold" / "fold0" / "scores" / "fer2013_zeroshot.tsv"
    ).exists()


@pytest.mark.workflow
def test_weights_are_searched_on_every_train_and_val_clip_out_of_fold(out_of_fold_run):
    work, _, sheet = out_of_fold_run
    results = work / "results"
    record = json.loads((results / "fusion" / "weights.json").read_text())
    pool = sheet[sheet["split"] != "test"]
    truth = np.array([CLASSES.index(label) for label in pool["label"]])
    assert record["searched_on"] == "out_of_fold"
    assert record["n_search_clips"] == len(pool)
    speaker = dict(zip(sheet["clip"], sheet["speaker"], strict=True))
    held_rows = {}
    for name in ("fer2013_frames", "fer2013_blstm"):
        parts = []
        for fold in range(2):
            table = read_scores(results / "out_of_fold" / f"fold{fold}" / "scores" / f"{name}.tsv")
            held = table[table["split"] == "test"]
            seen = {speaker[c] for c in table.index[table["split"] != "test"]}
            assert not seen & {speaker[c] for c in held.index}  # never saw a held-out subject
            parts.append(held)
        held_rows[name] = pd.concat(parts).loc[pool["clip"], CLASSES].to_numpy()
    # Zero-shot trains nothing: its own scores of those clips are its out-of-fold scores.
    held_rows["fer2013_zeroshot"] = (
        read_scores(results / "scores" / "fer2013_zeroshot.tsv")
        .loc[pool["clip"], CLASSES]
        .to_numpy()
    )
    for name, matrix in held_rows.items():
        accuracy = float((matrix.argmax(1) == truth).mean())
        assert record["search_accuracy_per_model"][name] == pytest.approx(accuracy)
    best = fusion.search([held_rows[n] for n in record["models"]], truth, step=0.05)
    assert list(record["weights"].values()) == pytest.approx(best.weights.tolist())
    assert record["search_accuracy"] == pytest.approx(best.accuracy)


@pytest.mark.workflow
def test_fused_scores_predictions_and_table2_follow_the_out_of_fold_weights(out_of_fold_run):
    work, _, sheet = out_of_fold_run
    results = work / "results"
    record = json.loads((results / "fusion" / "weights.json").read_text())
    main = {n: read_scores(results / "scores" / f"{n}.tsv").loc[sheet["clip"]] for n in FUSED}
    expected = fusion.fuse(
        [main[n][CLASSES].to_numpy() for n in record["models"]], list(record["weights"].values())
    )
    fused = read_scores(results / "scores" / "fusion.tsv").loc[sheet["clip"], CLASSES]
    np.testing.assert_allclose(fused.to_numpy(), expected, atol=1e-5)
    predictions = pd.read_csv(results / "predictions.tsv", sep="\t", dtype={"clip": str})
    test = sheet["split"].to_numpy() == "test"
    assert list(predictions["clip"]) == list(sheet["clip"][test])
    assert list(predictions["predicted"]) == [CLASSES[k] for k in expected[test].argmax(1)]
    val = sheet["split"].to_numpy() == "val"
    truth = np.array([CLASSES.index(label) for label in sheet["label"]])
    assert record["val_accuracy"] == pytest.approx((expected[val].argmax(1) == truth[val]).mean())
    table2 = pd.read_csv(results / "evaluation" / "table2.tsv", sep="\t")
    every = table2[table2["models"] == " + ".join(record["models"])].iloc[0]
    assert every["weights"] == " / ".join(f"{w:.3f}" for w in record["weights"].values())
    assert every["search_accuracy"] == pytest.approx(record["search_accuracy"], abs=1e-4)


@pytest.mark.workflow
def test_switching_it_off_reruns_the_fusion_not_the_models(out_of_fold_run):
    work, _, sheet = out_of_fold_run
    write_config(work, out_of_fold=0)
    try:
        counts = job_counts(snakemake(work))
        assert set(counts) == {"fuse", "evaluate", "plots", "all"}, counts
        record = json.loads((work / "results" / "fusion" / "weights.json").read_text())
        assert record["searched_on"] == "val"
        n_val = int((sheet["split"] == "val").sum())
        assert record["n_search_clips"] == record["n_val_clips"] == n_val
    finally:
        # Back to the module's run, whatever order the tests run in: the fusion again.
        write_config(work, out_of_fold=2)
        snakemake(work)
