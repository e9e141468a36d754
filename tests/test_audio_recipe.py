"""The cpu preset's spectrogram recipe learns emotion on speakers it never heard.

Real RAVDESS speech (../shared/data/ravdess_speech), four classes (angry, happy, sad,
neutral; strong intensity for the three emotions, so 16 clips per actor, 4 per class),
split by actor: train 01-06, validation 07, test 08-09. Every stage is the workflow's own
(extract_audio, spectrograms, finetune_audio_cnn, audio_features, train_blstm) with the
arguments ``msff.config`` gives the cpu preset, unchanged: fewer clips and classes keep
the test short. The CNN+BLSTM's test clips must beat the majority rate of the test clips
(25 %) by 15 points or more. bench/audio_ravdess.py measures the full recipe on seven
classes and 16 actors.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from msff import config, scores
from msff.heads.audio_cnn import audio_features, finetune_audio_cnn
from msff.heads.blstm import train_blstm
from msff.stages.audio import spectrograms
from msff.stages.media import extract_audio

from .conftest import DATA

SPEECH = DATA / "ravdess_speech"
CLASSES = ["angry", "happy", "sad", "neutral"]
SPLIT = {"01": "train", "02": "train", "03": "train", "04": "train", "05": "train",
         "06": "train", "07": "val", "08": "test", "09": "test"}  # fmt: skip


def clip_sheet() -> list[dict]:
    """The chosen clips of the split's actors: clip, path, class, split, speaker."""
    with open(SPEECH / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        dict(
            clip=row["path"].split("/")[-1].removesuffix(".flac"),
            path=str(SPEECH / row["path"]),
            split=SPLIT[row["speaker"]],
            speaker=row["speaker"],
            **{"class": row["label"]},
        )
        for row in rows
        if row["speaker"] in SPLIT
        and row["label"] in CLASSES
        and (row["label"] == "neutral" or row["intensity"] == "strong")
    ]


@pytest.fixture(scope="module")
def recipe(repo_config):
    """The cpu preset's audio values and head arguments, as the rules pass them."""
    cfg = dict(repo_config, preset="cpu")
    return config.preset(cfg)["audio"], config.head_arguments(cfg)


def test_the_cpu_spectrogram_recipe_beats_the_majority_on_unseen_speakers(tmp_path, recipe):
    audio, heads = recipe
    clips = clip_sheet()
    assert len(clips) == 16 * len(SPLIT)
    caches = {}
    spectrogram_args = {k: v for k, v in audio.items() if k not in ("sample_rate", "silence_dbfs")}
    for c in clips:
        wav = tmp_path / f"{c['clip']}.audio.h5"
        assert extract_audio(c["clip"], c["path"], wav, audio["sample_rate"], -60) == ""
        caches[c["clip"]] = str(tmp_path / f"{c['clip']}.h5")
        assert spectrograms(c["clip"], wav, caches[c["clip"]], **spectrogram_args) == ""
    cnn = tmp_path / "cnn.pt"
    finetune_audio_cnn(
        clips, caches, cnn, tmp_path / "cnn.json", CLASSES, weights=None, device="cpu",
        **heads["audio_cnn"],
    )  # fmt: skip
    features = tmp_path / "features.h5"
    audio_features(cnn, clips, caches, features, device="cpu")
    out = tmp_path / "blstm.tsv"
    train_blstm(
        features, clips, out, tmp_path / "blstm.pt", tmp_path / "blstm.json", CLASSES,
        unseen_note="no audio", device="cpu", **heads["audio_blstm"],
    )  # fmt: skip
    table = scores.read(out, CLASSES)
    test = [c for c in clips if c["split"] == "test"]
    truth = np.array([CLASSES.index(c["class"]) for c in test])
    predicted = table.loc[[c["clip"] for c in test], CLASSES].to_numpy().argmax(1)
    majority = np.bincount(truth).max() / len(truth)
    accuracy = (predicted == truth).mean()
    assert accuracy >= majority + 0.15, f"test accuracy {accuracy:.3f}, majority {majority:.3f}"
