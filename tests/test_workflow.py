"""The DAG run by Snakemake itself on real clips from ../shared/data, bad ones among them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from msff import faces, fusion, registry

from .conftest import (
    CKPLUS,
    CREMA_D,
    DATA,
    MEAD_FRONT,
    RAVDESS_AV,
    REPO,
    SPEECH_ANGRY,
    SPEECH_NEUTRAL,
)

pytestmark = pytest.mark.workflow

GOOD = {
    # clip: (path, label, split, speaker, has_video, has_audio)
    "ravdess_happy": (RAVDESS_AV, "happy", "train", "05", True, True),  # 1280x720 full frame
    "crema_angry": (CREMA_D, "angry", "train", "1001", True, True),  # 480x360 full frame
    "mead_happy": (MEAD_FRONT, "happy", "val", "W009", True, False),  # 256x256 face crop
    "speech_neutral": (SPEECH_NEUTRAL, "neutral", "test", "01", False, True),  # audio only
    "speech_angry": (SPEECH_ANGRY, "angry", "test", "01", False, True),
    "ck_surprise": (CKPLUS / "S010_002", "surprise", "val", "S010", True, False),  # 3 PNGs
}
PRECROPPED = {"ck_surprise"}  # sheet column face_input; the rest take config's `detect`
FACE_CLIPS = ["ravdess_happy", "crema_angry", "mead_happy", "mead_no_audio", "mead_frames"]
AUDIO_CLIPS = ["ravdess_happy", "crema_angry", "speech_neutral", "speech_angry"]
BAD_CLIPS = [
    "truncated",
    "zero_bytes",
    "no_face",
    "missing_file",
    "unmapped_label",
    "mead_no_audio",
]
KNOWN_CLIPS = {*GOOD, "mead_frames", *BAD_CLIPS}  # the module's first sheet


def sheet_rows(bad_clips, frame_folder):
    rows = [
        dict(clip=c, path=str(p), label=lab, split=s, speaker=spk, has_video=v, has_audio=a)
        for c, (p, lab, s, spk, v, a) in GOOD.items()
    ]
    # A folder of PNG frames of a real clip, faces to be detected (the sheet says no audio).
    rows.append(
        dict(
            clip="mead_frames",
            path=str(frame_folder),
            label="happy",
            split="val",
            speaker="W009",
            has_video=True,
            has_audio=False,
        )
    )
    # The bad ones; the sheet believes each has both streams, as a hand-made sheet would
    # (but for no_face, footage made without sound, where the sheet knows it).
    bad = {
        "truncated": (bad_clips["truncated"], "happy"),
        "zero_bytes": (bad_clips["empty"], "sad"),
        "no_face": (bad_clips["no_face"], "sad"),
        "missing_file": (bad_clips["missing"], "fear"),
        "unmapped_label": (CREMA_D.with_name("1001_DFA_SAD_XX.flv"), "bored"),
        "mead_no_audio": (DATA / "mead_front" / "M030_front_angry_level3_001.mp4", "angry"),
    }
    assert list(bad) == BAD_CLIPS
    for i, (clip, (path, label)) in enumerate(bad.items()):
        rows.append(
            dict(
                clip=clip,
                path=str(path),
                label=label,
                split="train",
                speaker=f"bad{i}",
                has_video=True,
                has_audio=clip != "no_face",
            )
        )
    for row in rows:
        row["face_input"] = "precropped" if row["clip"] in PRECROPPED else ""
    return rows


def write_sheet(work: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(work / "clips.tsv", sep="\t", index=False)


def snakemake(repo: Path, work: Path, *args: str, check: bool = True):
    # The preprocessing half of the DAG (the qc table); the models have tests of their own.
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(work),
        "--cores",
        "2",
        "results/qc.tsv",  # before args: --config takes every word after it
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_logs(work: Path) -> dict[str, int]:
    """Log file -> mtime: each job rewrites its log, so a changed mtime is a job that ran."""
    return {
        str(p.relative_to(work / "logs")): p.stat().st_mtime_ns
        for p in (work / "logs").rglob("*.log")
    }


def ran(before: dict, after: dict) -> set[str]:
    return {k.removesuffix(".log") for k, v in after.items() if before.get(k) != v}


def shard_logs(work: Path, rules, clips) -> set[str]:
    """The logs of the per-clip rules' jobs over the shards that hold ``clips``."""
    from msff.shards import shard_of

    n = yaml.safe_load((work / "config.yaml").read_text())["preprocess_shards"]
    return {f"shards/{rule}/{shard_of(clip, n)}" for rule in rules for clip in clips}


def copy_workflow(root: Path, *folders: str) -> tuple[Path, Path]:
    """A copy of the workflow under ``root`` and a working folder beside it: (repo, work).

    A test may edit the copy's msff/ code. work/config.yaml reads the sheet
    work/clips.tsv. ``folders``: more of the repository's folders copied (``profiles``:
    the copy then runs with the repository's default profile).
    """
    repo, work = root / "repo", root / "work"
    repo.mkdir()
    work.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, repo / name)
    for name in ("workflow", "envs", "msff", *folders):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return repo, work


@pytest.fixture(scope="module")
def project(tmp_path_factory, bad_clips, frame_folder):
    """A copy of the workflow (:func:`copy_workflow`) and its first run on the sheet."""
    repo, work = copy_workflow(tmp_path_factory.mktemp("workflow"))
    write_sheet(work, sheet_rows(bad_clips, frame_folder))
    first = snakemake(repo, work)
    # The first run's qc table, kept: later tests add clips and rerun qc.
    shutil.copy(work / "results" / "qc.tsv", work / "first_qc.tsv")
    return repo, work, first


@pytest.fixture(scope="module")
def qc(project):
    _, work, _ = project
    table = pd.read_csv(work / "first_qc.tsv", sep="\t", index_col="clip", keep_default_na=False)
    for column in ("frames", "faces_found", "face_coverage_pct", "audio_seconds"):
        table[column] = pd.to_numeric(table[column])  # empty (no such branch) -> NaN
    return table


def test_run_completes_despite_bad_clips_and_lists_them(project, qc):
    _, work, first = project
    assert set(qc.index) == KNOWN_CLIPS
    expected_errors = {
        "truncated": "truncated or damaged",
        "zero_bytes": "empty file (0 bytes)",
        "missing_file": "no such file",
        "mead_no_audio": "no audio stream",
    }
    for clip, problem in expected_errors.items():
        assert qc.loc[clip, "status"] == "error"
        assert f"clip {clip}: " in qc.loc[clip, "error"] and problem in qc.loc[clip, "error"]
        assert f"{clip}: " in first.stderr  # the console summary names it too
    assert qc.loc["unmapped_label", "status"] == "excluded"
    assert "'bored' is not a class" in qc.loc["unmapped_label", "error"]
    assert qc.loc["no_face", "status"] == "ok" and qc.loc["no_face", "faces_found"] == 0
    assert qc.loc["no_face", "note"].startswith("no face found in")
    for clip in GOOD:
        assert qc.loc[clip, "status"] == "ok", qc.loc[clip].to_dict()
    # No partial output: no temporary files, and the frames caches (temp) are gone.
    results = work / "results"
    assert not list(results.rglob("*.tmp"))
    assert not (results / "frames").exists() or not list((results / "frames").iterdir())


def test_branches_follow_the_streams(qc):
    assert qc.loc["ravdess_happy", "branches"] == "face+audio"
    assert qc.loc["mead_happy", "branches"] == "face"
    assert qc.loc["speech_neutral", "branches"] == "audio"
    assert qc.loc["mead_no_audio", "branches"] == "face"  # its face branch still ran
    assert qc.loc["mead_frames", "branches"] == "face"  # a frame folder: no audio


def test_precropped_frame_folder_takes_no_detection(project, qc):
    _, work, _ = project
    assert qc.loc["ck_surprise", "status"] == "ok" and qc.loc["ck_surprise", "branches"] == "face"
    assert (
        qc.loc["ck_surprise", "frames"] == 3 and qc.loc["ck_surprise", "face_coverage_pct"] == 100
    )
    assert "coverage assumed" in qc.loc["ck_surprise", "note"]
    with h5py.File(work / "results" / "faces" / "ck_surprise.h5") as f:
        assert f.attrs["face_input"] == "precropped" and f["found"][()].all()
    with h5py.File(work / "results" / "faces" / "mead_frames.h5") as f:
        assert "face_input" not in f.attrs  # detected, as config's face_input says


def test_faces_found_and_aligned_on_every_clip_with_a_face(project, qc):
    _, work, _ = project
    size = yaml.safe_load((work / "config.yaml").read_text())["presets"]["cpu"]["faces"]["size"]
    detector = faces.FaceDetector(20, None, "cpu")
    target = faces.template(size)
    for clip in FACE_CLIPS:
        assert qc.loc[clip, "face_coverage_pct"] >= 95, clip
        with h5py.File(work / "results" / "faces" / f"{clip}.h5") as f:
            assert f["faces"].shape[1:] == (size, size, 3)
            assert len(f["found"]) == f.attrs["n_frames"] == qc.loc[clip, "frames"]
            sample = f["faces"][::8][f["found"][::8]]
        canvas = np.full((len(sample), 2 * size, 2 * size, 3), 128, np.uint8)
        canvas[:, size // 2 : size // 2 + size, size // 2 : size // 2 + size] = sample
        for det in detector.detect(canvas):
            eyes = det.landmarks[0, :2] - size // 2
            assert np.linalg.norm(eyes - target[:2], axis=1).max() < 0.035 * size, clip


def test_spectrograms_and_opensmile_content(project, qc):
    _, work, _ = project
    audio = yaml.safe_load((work / "config.yaml").read_text())["presets"]["cpu"]["audio"]
    for clip in AUDIO_CLIPS:
        with h5py.File(work / "results" / "spectrograms" / f"{clip}.h5") as f:
            images = f["images"][()]
            starts = f["segment_start_s"][()]
            assert list(f["scales"][()]) == audio["scales"]
        seconds = qc.loc[clip, "audio_seconds"]
        assert images.shape == (
            len(audio["scales"]),
            len(starts),
            audio["image_size"],
            audio["image_size"],
        )
        assert images.dtype == np.uint8 and images.max() >= 240 and images.min() == 0
        assert abs(len(starts) - int((seconds - 0.3) / 0.15 + 1)) <= 1
        with h5py.File(work / "results" / "opensmile" / f"{clip}.h5") as f:
            features = f["features"][()]
            assert f.attrs["feature_set"] == "ComParE_2016"  # the cpu preset's svm_features
            assert f["feature_names"].asstr()[0] == "audspec_lengthL1norm_sma_range"
            assert f.attrs["functional_windows"] == 1  # seconds long: the wheel's values
        assert features.shape == (6373,) and np.isfinite(features).all()


def test_adding_a_clip_runs_only_its_jobs(project):
    repo, work, _ = project
    rows = pd.read_csv(work / "clips.tsv", sep="\t", dtype=str).to_dict("records")
    rows.append(
        dict(
            clip="crema_happy",
            path=str(CREMA_D.with_name("1001_DFA_HAP_XX.flv")),
            label="happy",
            split="train",
            speaker="1001",
            has_video="True",
            has_audio="True",
        )
    )
    before = job_logs(work)
    write_sheet(work, rows)
    snakemake(repo, work)
    # The one shard the clip joined reruns each per-clip stage, which works on that clip
    # alone (its log is the only clip log rewritten); then qc, which reads every clip.
    rules = ("align_faces", "extract_audio", "spectrograms", "opensmile")
    assert ran(before, job_logs(work)) == {f"{rule}/crema_happy" for rule in rules} | shard_logs(
        work, rules, ["crema_happy"]
    ) | {"qc"}


def test_editing_imported_code_reruns_its_stages_only(project):
    repo, work, _ = project
    before = job_logs(work)
    with open(repo / "msff" / "audio.py", "a") as f:
        f.write("\n# an edit to the spectrogram and openSMILE code\n")
    snakemake(repo, work)
    # The sheet's clips with a soundtrack to look at (the sheet says so; unmapped_label is
    # dropped from the run), and any clip another test of the module added to the sheet.
    sheet = pd.read_csv(work / "clips.tsv", sep="\t", dtype=str)
    added = [c for c in sheet["clip"] if c not in KNOWN_CLIPS]
    audio_clips = AUDIO_CLIPS + ["truncated", "zero_bytes", "missing_file", "mead_no_audio"]
    audio_clips += added
    rules = ("spectrograms", "opensmile")
    assert ran(before, job_logs(work)) == {
        f"{rule}/{clip}" for rule in rules for clip in audio_clips
    } | shard_logs(work, rules, audio_clips) | {"qc"}


def test_nothing_reruns_when_nothing_changed(project):
    repo, work, _ = project
    before = job_logs(work)
    proc = snakemake(repo, work)
    assert ran(before, job_logs(work)) == set()
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_wrong_config_key_stops_the_run_naming_the_key(project):
    repo, work, _ = project
    proc = snakemake(repo, work, "--config", "sampels=x.tsv", check=False)
    assert proc.returncode != 0
    assert "sampels" in proc.stderr and "Additional properties are not allowed" in proc.stderr


def test_a_sheet_with_no_clip_to_run_stops_before_any_job(project, tmp_path):
    repo, work, _ = project
    sheet = tmp_path / "bored.tsv"
    rows = [dict(clip="c1", path=str(CREMA_D), label="bored", split="train", speaker="1001")]
    write_sheet(tmp_path, rows)
    (tmp_path / "clips.tsv").rename(sheet)
    proc = snakemake(repo, work, "-n", "--config", f"samples={sheet}", check=False)
    assert proc.returncode != 0
    assert f"{sheet}: no clip to run: every clip is excluded (label 'bored'" in (
        proc.stdout + proc.stderr
    )


def test_a_missing_weight_file_stops_the_run_before_any_job(project, tmp_path):
    repo, work, _ = project
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["weights"]["fer2013"] = str(tmp_path / "emotion_model.hdf5")  # not there
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(repo, work, "-n", "--configfile", str(tmp_path / "config.yaml"), check=False)
    assert proc.returncode != 0
    assert f"config weights.fer2013: {tmp_path / 'emotion_model.hdf5'}: no such weight file" in (
        proc.stdout + proc.stderr
    )


KILLED_BY = """
import os, signal

_extract_audio = extract_audio


def extract_audio(clip, *args, **kwargs):
    if clip == "speech_angry":  # killed, as the kernel's out-of-memory killer kills
        os.kill(os.getpid(), signal.SIGKILL)
    return _extract_audio(clip, *args, **kwargs)
"""


def test_one_run_gets_past_a_clip_that_kills_its_shard(tmp_path):
    # A clip that kills the process working on it (out of memory, a crash in native code)
    # is worked on twice, then recorded as bad (msff/shards.py): the per-clip rules retry
    # twice whatever the profile says, so one `snakemake` run with the repository's default
    # profile (retries: 1) ends with that clip in the qc table and the others done.
    repo, work = copy_workflow(tmp_path, "profiles")
    with open(repo / "msff" / "stages" / "media.py", "a") as f:
        f.write(KILLED_BY)
    sheet = {"speech_neutral": (SPEECH_NEUTRAL, "neutral"), "speech_angry": (SPEECH_ANGRY, "angry")}
    rows = [
        dict(clip=clip, path=str(path), label=label, split="train", speaker="01")
        for clip, (path, label) in sheet.items()
    ]
    write_sheet(work, [dict(row, has_video=False, has_audio=True, face_input="") for row in rows])
    profile = yaml.safe_load((repo / "profiles" / "default" / "config.yaml").read_text())
    assert profile["retries"] == 1
    # The jobs import the copy's msff (the killing one), not the installed one.
    env = dict(os.environ, PYTHONPATH=str(repo))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work),
           "--cores", "2", "results/qc.tsv"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "Using workflow specific profile profiles/default" in proc.stdout + proc.stderr
    qc = pd.read_csv(work / "results" / "qc.tsv", sep="\t", index_col="clip", keep_default_na=False)
    assert qc.loc["speech_neutral", "status"] == "ok"
    assert qc.loc["speech_angry", "status"] == "error"
    assert (
        "the process died while working on it, 2 times in a row" in qc.loc["speech_angry", "error"]
    )


# The whole DAG, to the fused predictions, with the bad clips still in the sheet: every
# model rule trains on the clips it can use and scores every clip.
SPEECH_TRAIN = {  # more training speakers, so the SVM's speaker folds have 2 classes each
    f"speech_{actor}_{label}": (DATA / "ravdess_speech" / f"Actor_{actor}" / name, label, actor)
    for actor, label, name in [
        ("02", "angry", "03-01-05-02-01-01-02.flac"),
        ("02", "happy", "03-01-03-02-01-01-02.flac"),
        ("04", "sad", "03-01-04-02-01-01-04.flac"),
        ("04", "happy", "03-01-03-02-01-01-04.flac"),
    ]
}


def snakemake_dag(repo: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the default target (every model, fusion, evaluation)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work)]
    proc = subprocess.run([*cmd, "--cores", "2", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned(repo: Path, work: Path) -> set[str]:
    """The rules a dry run would run (its job stats table)."""
    proc = snakemake_dag(repo, work, "-n")
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.strip()}


# Every hostile case of issue 17 (conftest's hostile_clips) in the same run: those not in
# the sheet already join it as test clips, so each gets fused predictions and a submission.
HOSTILE_IN_SHEET = {
    "empty": "zero_bytes",
    "truncated": "truncated",
    "no_audio_stream": "mead_no_audio",
    "audio_only": "speech_neutral",
    "no_face": "no_face",
}


def gets_a_label(work: Path, face: bool, speech: bool) -> bool:
    """Whether a fused model sees a clip with (or without) faces and speech (not silence).

    Fused by the weights where a model of nonzero weight sees it, else equally by the
    fused models that do (msff.fusion.fuse_seen); no label where none does.
    """
    fused = json.loads((work / "results" / "fusion" / "weights.json").read_text())["models"]
    needs = {registry.model(name).needs for name in fused}
    return (face and "faces" in needs) or (speech and bool(needs - {"faces"}))


def hostile_clip(case: str) -> str:
    return HOSTILE_IN_SHEET.get(case, f"hostile_{case}")


@pytest.fixture(scope="module")
def full_run(project, hostile_clips):
    repo, work, _ = project
    rows = pd.read_csv(work / "clips.tsv", sep="\t", dtype=str).to_dict("records")
    for clip, (path, label, actor) in SPEECH_TRAIN.items():
        rows.append(
            dict(clip=clip, path=str(path), label=label, split="train", speaker=actor)
            | dict(has_video="False", has_audio="True", face_input="")
        )
    for i, (case, path) in enumerate(hostile_clips.items()):
        if case not in HOSTILE_IN_SHEET:  # the sheet believes each has both streams
            rows.append(
                dict(clip=hostile_clip(case), path=str(path), label="happy", split="test")
                | dict(speaker=f"hostile{i}", has_video="True", has_audio="True", face_input="")
            )
    write_sheet(work, rows)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["presets"]["cpu"]["models"]["epochs"] = 2  # the DAG, not accuracy, is tested
    config["presets"]["cpu"]["models"]["audio_cnn_epochs"] = 2  # its own value in cpu
    config["models"]["zeroshot"] = True
    config["fusion"]["models"] = ["fer2013_zeroshot", "fer2013_blstm", "c3d", "opensmile_svm"]
    config["fusion"]["submission"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake_dag(repo, work)
    return repo, work, rows


def test_every_model_scores_every_clip_and_fusion_predicts_despite_bad_clips(full_run):
    _, work, rows = full_run
    config = yaml.safe_load((work / "config.yaml").read_text())
    classes = config["labels"]["classes"]
    running = {r["clip"] for r in rows if r["clip"] != "unmapped_label"}
    from msff import scores

    names = [m.name for m in registry.models(config["models"])]
    assert "fer2013_zeroshot" in names
    for name in [*names, "fusion"]:
        table = scores.read(work / "results" / "scores" / f"{name}.tsv", classes)
        assert set(table.index) == running, name
    svm = scores.read(work / "results" / "scores" / "opensmile_svm.tsv", classes)
    assert "empty file" in svm.loc["zero_bytes", "note"]
    assert "no audio stream" in svm.loc["mead_no_audio", "note"]
    blstm = scores.read(work / "results" / "scores" / "fer2013_blstm.tsv", classes)
    assert blstm.loc["no_face", "note"] == "no face found"
    assert blstm.loc["truncated", "note"] == "no face found"  # its faces cache is an error
    hog = scores.read(work / "results" / "scores" / "hog_svm.tsv", classes)
    assert hog.loc["no_face", "note"] == hog.loc["truncated", "note"] == "no face found"
    assert np.allclose(hog.loc["no_face", classes], 1 / len(classes))  # uniform: no face
    predictions = pd.read_csv(
        work / "results" / "predictions.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert set(predictions["clip"]) == {r["clip"] for r in rows if r["split"] == "test"}
    # EmotiW's submission: one file per labelled test clip holding its predicted label.
    for clip, label in zip(predictions["clip"], predictions["predicted"], strict=True):
        submitted = work / "results" / "submission" / f"{clip}.txt"
        if label:
            assert submitted.read_text() == label.capitalize() + "\n"
        else:
            assert not submitted.exists(), clip


def test_every_hostile_case_ends_scored_fused_and_explained(full_run, hostile_clips):
    from .test_hostile import EXPECT

    _, work, _ = full_run
    classes = yaml.safe_load((work / "config.yaml").read_text())["labels"]["classes"]
    qc = pd.read_csv(work / "results" / "qc.tsv", sep="\t", index_col="clip", dtype=str)
    qc = qc.fillna("")
    from msff import scores

    tables = {p.stem: scores.read(p, classes) for p in (work / "results" / "scores").glob("*.tsv")}
    assert {"fer2013_blstm", "c3d", "vgg19_blstm_audio", "opensmile_svm", "fusion"} <= set(tables)
    predictions = pd.read_csv(
        work / "results" / "predictions.tsv", sep="\t", index_col="clip", keep_default_na=False
    )
    assert set(EXPECT) == set(hostile_clips)
    for case, (decodes, face, heard) in EXPECT.items():
        clip = hostile_clip(case)
        row = qc.loc[clip]
        for name, table in tables.items():
            assert clip in table.index, (name, clip)
        if clip.startswith("hostile_"):  # a test clip: a label and its file, or why not
            predicted, note = predictions.loc[clip, ["predicted", "note"]]
            submitted = (work / "results" / "submission" / f"{clip}.txt").exists()
            if gets_a_label(work, face, row["audio"] == "speech"):
                assert predicted in classes and submitted, (clip, predicted, note)
                assert not note or note.startswith(fusion.EQUAL_NOTE), (clip, note)
            else:  # no model saw it: no label, no file, and the stages' reasons
                assert predicted == "" and not submitted, (clip, predicted)
                assert note.startswith("no fused model could score it ("), (clip, note)
        branches = row["branches"].split("+")
        if not decodes and case != "audio_only":  # the sheet said it has video
            assert row["status"] == "error" and f"clip {clip}: " in row["error"], row.to_dict()
        assert ("face" in branches) == face, row.to_dict()
        # Decoded; a silent track (the 1-s cuts) is noted, not used.
        assert (row["audio"] in ("speech", "silent")) == heard, row.to_dict()
        assert heard or "audio" not in branches, row.to_dict()
        # A clip that lost a branch the sheet promised says why: an error or a note.
        if "face" not in branches or "audio" not in branches:
            assert row["error"] or row["note"], row.to_dict()


def test_predict_prints_a_line_for_every_hostile_file(full_run, hostile_clips):
    from .test_hostile import EXPECT

    _, work, _ = full_run
    sources = [str(p) for p in hostile_clips.values()]
    proc = subprocess.run(
        # --speaker names a speaker of the run (actor 01): its audio statistics serve.
        [sys.executable, "-m", "msff", "predict", *sources, "--results", str(work / "results")]
        + ["--speaker", "01"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == sources, proc.stdout
    classes = yaml.safe_load((work / "config.yaml").read_text())["labels"]["classes"]
    # What the run's own stages made of each file: predict runs the same ones.
    qc = pd.read_csv(work / "results" / "qc.tsv", sep="\t", index_col="clip", dtype=str)
    for (case, path), line in zip(hostile_clips.items(), lines, strict=True):
        label = line.split("\t")[1]
        _, face, _ = EXPECT[case]
        speech = qc.loc[hostile_clip(case), "audio"] == "speech"
        if gets_a_label(work, face, speech):  # a fused model sees it: a label
            assert label in classes, line
        else:  # an error that names the file, or no label and why (the stages' notes)
            assert label.startswith(("error: ", "no label: no fused model could score it (")), line
            assert label.startswith("no label") or path.stem in label, line


def test_editing_c3d_reruns_only_c3d_and_what_reads_its_scores(full_run):
    repo, work, _ = full_run
    assert planned(repo, work) == set()
    original = (repo / "msff" / "models" / "c3d.py").read_text()
    (repo / "msff" / "models" / "c3d.py").write_text(original + "\n# an edit to C3D\n")
    try:
        # C3D, and what reads its scores: fusion, evaluation, the plots, the submission.
        assert planned(repo, work) == {
            "train_c3d",
            "fuse",
            "evaluate",
            "plots",
            "submission",
            "all",
        }
    finally:
        (repo / "msff" / "models" / "c3d.py").write_text(original)
        os.utime(repo / "msff" / "models" / "c3d.py", (0, 0))  # older than every output


def planned_with_cpu_models(repo: Path, work: Path, **changed) -> set[str]:
    """The rules a dry run would run with these values in the run's cpu preset models."""
    path = work / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    config["presets"]["cpu"]["models"].update(changed)
    path.write_text(yaml.safe_dump(config))
    try:
        return planned(repo, work)
    finally:
        path.write_text(original)


def test_audio_cnn_values_rerun_only_the_audio_cnn_and_what_reads_it(full_run):
    repo, work, _ = full_run
    # Not fuse: this run's fusion.models leave the spectrogram model out.
    for changed in (dict(audio_cnn_lr=3e-4), dict(audio_cnn_speaker_norm=0)):
        assert planned_with_cpu_models(repo, work, **changed) == {
            "finetune_audio_cnn",
            "audio_features",
            "train_blstm_audio",
            "evaluate",
            "plots",
            "all",
        }, changed


def test_svm_features_rerun_the_opensmile_stage_and_what_reads_it(full_run):
    repo, work, _ = full_run
    # The features of every audio clip (its shard jobs), the SVM, and what reads them.
    changed = dict(svm_features="IS09_emotion", svm_kernel="rbf", svm_speaker_norm=0)  # paper's
    assert planned_with_cpu_models(repo, work, **changed) == {
        "opensmile",
        "qc",
        "svm_opensmile",
        "fuse",
        "evaluate",
        "plots",
        "submission",
        "all",
    }


def test_speaker_normalisation_of_a_branch_reruns_its_blstms_only(full_run):
    repo, work, _ = full_run
    # The face BLSTMs' setting: the face BLSTM and what reads its scores, no audio model.
    face_on = dict(blstm_speaker_norm={"face": 5, "audio": 5})
    assert planned_with_cpu_models(repo, work, **face_on) == {
        "train_blstm",
        "fuse",
        "evaluate",
        "plots",
        "submission",
        "all",
    }
    audio_off = dict(blstm_speaker_norm={"face": 0, "audio": 0})
    assert "train_blstm_audio" in planned_with_cpu_models(repo, work, **audio_off)
    assert "train_blstm" not in planned_with_cpu_models(repo, work, **audio_off)


def test_predict_reproduces_the_fused_scores_of_the_workflow(full_run):
    """msff predict runs the same stage and head code: a video and a CK+ frame folder."""
    _, work, rows = full_run
    config = yaml.safe_load((work / "config.yaml").read_text())
    classes = config["labels"]["classes"]
    from msff import scores
    from msff.predict import Predictor, run_config

    cfg = run_config(work / "results")
    assert cfg["presets"]["cpu"]["models"]["epochs"] == 2  # the run's config, not the repo's
    fused = scores.read(work / "results" / "scores" / "fusion.tsv", classes)
    frame_cnn = scores.read(work / "results" / "scores" / "fer2013_frames.tsv", classes)
    paths = {r["clip"]: r["path"] for r in rows}
    speakers = {r["clip"]: r["speaker"] for r in rows}
    # A CK+ frame folder has no audio: the audio model cannot see it, the face models can.
    for clip, face_input, unable in (
        ("crema_angry", "detect", []),
        ("ck_surprise", "precropped", ["opensmile_svm"]),
    ):
        predictor = Predictor(work / "results", dict(cfg, face_input=face_input))
        # The run's speaker: the speaker-normalised SVM scores it with that speaker's
        # statistics, as the workflow did (the fusion weighs every model).
        result = predictor(paths[clip], per_frame=True, speaker=speakers[clip])
        got = np.array([result.scores[c] for c in classes])
        # fc7 features are stored as float16 in the workflow, and predict rounds the same
        # way; scores are written with 6 significant digits.
        np.testing.assert_allclose(got, fused.loc[clip, classes].to_numpy(float), atol=2e-3)
        assert result.label == classes[int(np.argmax(fused.loc[clip, classes]))]
        assert result.mode == "fused" and result.models_unable == unable
        # Per frame: a row per frame of the run's faces cache, the frame CNN's scores,
        # whose mean over the found faces is what the workflow wrote for the clip.
        frames = pd.DataFrame(result.frames)
        with h5py.File(work / "results" / "faces" / f"{clip}.h5", "r") as f:
            found = f["found"][()]
        assert len(frames) == len(found) and (frames["found"].to_numpy() == found).all()
        assert set(frames["model"]) == {"fer2013_frames"}
        np.testing.assert_allclose(
            frames.loc[frames["found"], classes].to_numpy(float).mean(0),
            frame_cnn.loc[clip, classes].to_numpy(float),
            atol=2e-3,
        )
    # The cpu preset normalises the SVM's features by speaker: told whose clip it is, predict
    # standardises a clip of actor 01 (two clips in the run) by the statistics the run kept
    # for 01, which are those of 01's clips; untold, as a speaker of one clip. The demo's SVM
    # is fused alone here, and its flat calibration (2 epochs of data) sharpened, so the
    # difference shows in the scores.
    predictor = Predictor(work / "results", cfg)
    predictor.weights = {m: float(m == "opensmile_svm") for m in predictor.weights}
    fitted = predictor.models.loaded["opensmile_svm"]
    fitted.arrays["beta"] = np.float64(1.0)
    x = []
    for clip in ("speech_neutral", "speech_angry"):
        with h5py.File(work / "results" / "opensmile" / f"{clip}.h5", "r") as f:
            x.append(f["features"][()])
    from msff import svm

    # Grouped under a name the model did not keep: 01's statistics computed afresh.
    want = svm.predict_scores(fitted, np.stack(x), ["actor 01", "actor 01"])[1]
    run_speaker = predictor(paths["speech_angry"], speaker="01")
    assert run_speaker.models_used == ["opensmile_svm"]
    np.testing.assert_allclose([run_speaker.scores[c] for c in classes], want, atol=1e-5)
    alone = predictor(paths["speech_angry"])
    assert np.abs(np.array([alone.scores[c] for c in classes]) - want).max() > 1e-3
    # A speaker the run never saw, learnt from its clips (msff predict a b --speaker NEW):
    # 01's two clips under a new name give 01's statistics afresh, so `want`. The run's
    # own 01 has nothing to learn.
    of_01 = [paths["speech_neutral"], paths["speech_angry"]]
    assert predictor.enrol("01", of_01) == []
    assert predictor.enrol("new", of_01) == ["opensmile_svm"]
    learnt = predictor(paths["speech_angry"], speaker="new")
    np.testing.assert_allclose([learnt.scores[c] for c in classes], want, atol=1e-5)


def test_predict_names_a_damaged_model_file_of_the_run(full_run, tmp_path):
    _, work, _ = full_run
    from msff.errors import ConfigError
    from msff.predict import Predictor, run_config

    copy = tmp_path / "results"
    for folder in ("models", "fusion"):
        shutil.copytree(work / "results" / folder, copy / folder)
    cfg = run_config(copy)
    blstm = copy / "models" / "fer2013_blstm.pt"
    blstm.write_bytes(blstm.read_bytes()[: blstm.stat().st_size // 2])  # cut short
    with pytest.raises(ConfigError, match=f"{re.escape(str(blstm))}.* fer2013_blstm cannot be"):
        Predictor(copy, cfg)
    (copy / "fusion" / "weights.json").write_text("{not json")
    with pytest.raises(ConfigError, match="weights.json: not the run's fusion weights"):
        Predictor(copy, cfg)
