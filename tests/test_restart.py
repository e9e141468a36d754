"""A run killed outright (SIGKILL of Snakemake and all its jobs) restarts cleanly (issue 17).

One small DAG (real clips, every model, two epochs) runs twice in two folders: once
undisturbed, once killed with SIGKILL twice, at moments found by watching the results
folder (a per-clip stage writing its cache; a training job's checkpoint), and restarted
each time with the same command. The restarted run must end with the same bytes in every
scores file and the predictions, and leave no temporary file behind: this also shows that
two runs with the same config and seed give identical scores on a CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import CREMA_D, DATA, RAVDESS_AV, REPO, SPEECH_ANGRY, SPEECH_NEUTRAL

pytestmark = pytest.mark.workflow

SPEECH = DATA / "ravdess_speech"
CLIPS = {  # clip: (path, label, split, speaker); .flac files are audio only
    "ravdess_happy": (RAVDESS_AV, "happy", "train", "05"),
    "ravdess_sad": (RAVDESS_AV.with_name("01-01-04-01-01-01-05.mp4"), "sad", "train", "05"),
    # Two more training speakers, so the SVM's speaker folds each hold two classes.
    "speech_02_angry": (SPEECH / "Actor_02" / "03-01-05-02-01-01-02.flac", "angry", "train", "02"),
    "speech_02_happy": (SPEECH / "Actor_02" / "03-01-03-02-01-01-02.flac", "happy", "train", "02"),
    "speech_04_sad": (SPEECH / "Actor_04" / "03-01-04-02-01-01-04.flac", "sad", "train", "04"),
    "speech_04_happy": (SPEECH / "Actor_04" / "03-01-03-02-01-01-04.flac", "happy", "train", "04"),
    "crema_angry": (CREMA_D, "angry", "val", "1001"),
    "crema_happy": (CREMA_D.with_name("1001_DFA_HAP_XX.flv"), "happy", "val", "1001"),
    "speech_neutral": (SPEECH_NEUTRAL, "neutral", "test", "01"),
    "speech_angry": (SPEECH_ANGRY, "angry", "test", "01"),
}
PER_CLIP = ("frames", "faces", "audio", "spectrograms", "opensmile")


def prepare(work: Path) -> None:
    """The sheet and a config: the repo's cpu preset, two epochs (a checkpoint to resume)."""
    work.mkdir()
    rows = []
    for clip, (path, label, split, speaker) in CLIPS.items():
        video = path.suffix != ".flac"
        rows.append(
            dict(clip=clip, path=str(path), label=label, split=split, speaker=speaker)
            | dict(has_video=video, has_audio=True)
        )
    pd.DataFrame(rows).to_csv(work / "clips.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    config["presets"]["cpu"]["models"]["epochs"] = 2
    # Not the spectrogram VGG-19: by far the slowest to train on a CPU, and its resuming is
    # the same fit() as every head's (test_checkpoint).
    config["models"]["audio_cnn"] = False
    config["fusion"]["models"] = ["fer2013_blstm", "c3d", "opensmile_svm"]
    (work / "config.yaml").write_text(yaml.safe_dump(config))


def command(work: Path, *extra: str) -> list[str]:
    # The same command every time. --rerun-incomplete: a job killed after writing some of
    # its outputs (a model but not its scores) has those outputs marked incomplete, and
    # Snakemake refuses to start without it (profiles/default sets it).
    return [
        *(sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)),
        *("--cores", "2", "--workflow-profile", "none", "--rerun-incomplete", *extra),
    ]


def run(work: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(work, *extra), capture_output=True, text=True)


def finished(proc: subprocess.CompletedProcess) -> None:
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


def temporaries(results: Path) -> list[str]:
    """msff's atomic-write temporaries (``.{name}.{host}.{pid}.tmp``) and any other."""
    return sorted(str(p.relative_to(results)) for p in results.rglob("*.tmp*"))


def kill_when(work: Path, event, what: str) -> None:
    """Start the run in its own process group; SIGKILL the group when ``event()`` is true."""
    with open(work / f"killed_{what}.log", "w") as log:
        proc = subprocess.Popen(
            command(work), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        while proc.poll() is None and not event():
            time.sleep(0.05)
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def writing_a_clip_cache(results: Path) -> bool:
    """A per-clip stage is half way through writing its cache."""
    return any(any((results / stage).glob(".*.tmp")) for stage in PER_CLIP)


def training_checkpointed(results: Path) -> bool:
    """A training job has written the state of an epoch and is still going."""
    return any((results / "checkpoints").rglob("*.pt"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("restart")
    whole, killed = root / "whole", root / "killed"
    for work in (whole, killed):
        prepare(work)
    finished(run(whole))
    results = killed / "results"
    kill_when(killed, lambda: writing_a_clip_cache(results), "preprocessing")
    leftovers = {"preprocessing": temporaries(results)}
    # A killed Snakemake leaves its lock; the same command refuses to start.
    refused = run(killed)
    finished(run(killed, "--unlock"))
    kill_when(killed, lambda: training_checkpointed(results), "training")
    leftovers["training"] = temporaries(results)
    finished(run(killed, "--unlock"))
    last = run(killed)
    finished(last)
    return whole, killed, refused, leftovers, last


def test_a_killed_run_leaves_its_lock_until_unlocked(runs):
    _, _, refused, _, _ = runs
    assert refused.returncode != 0
    assert "Directory cannot be locked" in refused.stdout + refused.stderr


def test_kills_hit_a_stage_mid_write_and_a_training_mid_way(runs):
    _, killed, _, leftovers, last = runs
    # The kill stopped a writer before its rename: its temporary file was left behind.
    assert any(Path(p).parts[0] in PER_CLIP for p in leftovers["preprocessing"])
    # The restart resumed the killed training from its checkpoint.
    logs = "".join(p.read_text() for p in (killed / "logs").rglob("*.log"))
    assert "resuming after epoch 1" in logs


def test_restarted_run_ends_with_the_bytes_of_an_undisturbed_run(runs):
    whole, killed, _, _, _ = runs
    names = sorted(p.name for p in (whole / "results" / "scores").glob("*.tsv"))
    assert names == sorted(p.name for p in (killed / "results" / "scores").glob("*.tsv"))
    assert {"fer2013_frames.tsv", "fer2013_blstm.tsv", "c3d.tsv", "opensmile_svm.tsv"} <= set(names)
    assert "fusion.tsv" in names
    for rel in [*(f"scores/{n}" for n in names), "predictions.tsv", "fusion/weights.json"]:
        same = (whole / "results" / rel).read_bytes() == (killed / "results" / rel).read_bytes()
        assert same, rel


def test_no_temporary_file_or_checkpoint_is_left(runs):
    whole, killed, _, _, _ = runs
    for work in (whole, killed):
        assert temporaries(work / "results") == []
        assert not [p for p in (work / "results" / "checkpoints").rglob("*") if p.is_file()]
