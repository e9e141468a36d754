"""Speaker normalisation on real RAVDESS speech: log-mel frame sequences of three actors."""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile

from msff import cache, config, scores, speakers
from msff.heads import blstm

from .conftest import DATA

SPEECH = DATA / "ravdess_speech"


@pytest.fixture(scope="module")
def sequences(repo_config) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Per-frame log-mel bands (frames, 32) of 8 clips each of actors 01-03 (calm dropped),
    their actors and their classes."""
    table = pd.read_csv(SPEECH / "labels.csv", dtype=str)
    table["class"] = [config.class_of(label, repo_config["labels"]) for label in table["label"]]
    table = table[table["speaker"].isin(["01", "02", "03"]) & table["class"].notna()]
    table = table.groupby("speaker").head(8)
    clips = []
    for path in table["path"]:
        waveform, rate = soundfile.read(SPEECH / path, dtype="float32")
        bands = librosa.feature.melspectrogram(y=waveform, sr=rate, n_mels=32, hop_length=320)
        clips.append(librosa.power_to_db(bands).T.astype(np.float64))
    return clips, table["speaker"].to_numpy(), list(table["class"])


def test_each_speaker_is_standardised_over_its_own_clips(sequences):
    clips, actors, _ = sequences
    typical = speakers.typical_speaker(clips, actors)
    own = speakers.standardise(clips, actors, typical, prior=0.0)
    assert [c.shape for c in own] == [c.shape for c in clips]
    for actor in ("01", "02", "03"):
        mine = [c for c, a in zip(own, actors, strict=True) if a == actor]
        # Each clip counts once: the mean of its clips' means is 0, their rows' mean square 1.
        np.testing.assert_allclose(np.mean([c.mean(0) for c in mine], axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(np.mean([(c**2).mean(0) for c in mine], axis=0), 1, atol=1e-9)
    # What a voice adds to every clip (an offset, a gain per band) comes out.
    louder = [3.0 * c + 7.0 if a == "01" else c for c, a in zip(clips, actors, strict=True)]
    for got, want in zip(speakers.standardise(louder, actors, typical, 0.0), own, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_few_clips_lean_on_the_typical_speaker(sequences):
    clips, actors, _ = sequences
    typical = speakers.typical_speaker(clips, actors)
    lone = clips[0]
    # A huge prior leaves the typical speaker's statistics alone.
    only_typical = (lone - typical["speaker_mean"]) / np.sqrt(typical["speaker_var"])
    np.testing.assert_allclose(speakers.standardise([lone], ["x"], typical, 1e12)[0], only_typical)
    # One clip and a prior of 5: the mean is a sixth of the way from the typical to its own.
    shrunk = speakers.standardise([lone], ["x"], typical, 5.0)[0]
    own = speakers.standardise([lone], ["x"], typical, 0.0)[0]
    assert np.abs(shrunk.mean(0)).mean() > np.abs(own.mean(0)).mean() + 0.1
    # A clip of one row (openSMILE functionals) alone, unshrunk, has nothing left.
    np.testing.assert_array_equal(speakers.standardise([lone[:1]], ["x"], typical, 0.0)[0], 0)


def test_clips_without_rows_play_no_part(sequences):
    clips, actors, _ = sequences
    typical = speakers.typical_speaker(clips, actors)
    empty = np.zeros((0, clips[0].shape[1]), np.float32)
    with_empty = speakers.standardise([*clips, empty], [*actors, "01"], typical, 5.0)
    assert with_empty[-1].shape == (0, clips[0].shape[1])
    without = speakers.standardise(clips, actors, typical, 5.0)
    for got, want in zip(with_empty[:-1], without, strict=True):
        np.testing.assert_array_equal(got, want)
    assert speakers.typical_speaker([*clips, empty], [*actors, "04"]).keys() == typical.keys()
    with pytest.raises(ValueError, match="no speaker has a clip with features"):
        speakers.typical_speaker([empty], ["01"])
    with pytest.raises(ValueError, match="24 clips and 3 speakers"):
        speakers.standardise(clips, ["01", "02", "03"], typical, 5.0)


def test_blstm_keeps_its_speakers_for_predict(sequences, repo_config, tmp_path):
    """train_blstm standardises by speaker; infer gives a clip of a kept speaker its scores."""
    clips, actors, labels = sequences
    classes = repo_config["labels"]["classes"]
    records = [
        dict(clip=f"c{i}", split="val" if a == "03" else "train", speaker=a, **{"class": c})
        for i, (a, c) in enumerate(zip(actors, labels, strict=True))
    ]
    records[-1]["speaker"] = "04"  # a speaker of one clip
    features = tmp_path / "logmel.h5"
    cache.write_features(
        features,
        {"backbone": "logmel"},
        [(r["clip"], c) for r, c in zip(records, clips, strict=True)],
    )
    out = {k: tmp_path / f"blstm.{k}" for k in ("tsv", "pt", "json")}
    settings = dict(epochs=2, batch_size=8, lr=1e-3, optimizer="adam", seed=0)
    blstm.train_blstm(
        str(features), records, out["tsv"], out["pt"], out["json"], classes, settings,
        hidden=8, window=8, stride=4, unseen_note="none", device="cpu", speaker_norm=5.0,
    )  # fmt: skip
    written = scores.read(out["tsv"], classes)
    loaded = blstm.load(out["pt"])
    assert loaded[1]["speaker_norm"] == 5.0
    assert set(loaded[1]["speakers"]["known"]) == {"01", "02", "03"}  # not the lone 04
    for record, clip in zip(records, clips, strict=True):
        want = written.loc[record["clip"], classes].to_numpy(float)
        got = blstm.infer(loaded, clip, speaker=record["speaker"])
        np.testing.assert_allclose(got, want, atol=1e-5)  # the scores file's 6 digits
    # Unnamed, a clip of actor 01 is a speaker of one clip: other statistics, other scores.
    alone = blstm.infer(loaded, clips[0])
    assert np.abs(alone - written.loc["c0", classes].to_numpy(float)).max() > 1e-4
    # The lone speaker 04 needs nothing kept: alone, it is what it was in training.
    np.testing.assert_allclose(
        blstm.infer(loaded, clips[-1]), written.loc[records[-1]["clip"], classes], atol=1e-5
    )


def test_a_sheet_of_lone_speakers_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="msff"):
        speakers.warn_if_few_clips(["1001", "1002", "1002", "1003"], "svm_speaker_norm")
    assert "median speaker has 1 clip(s)" in caplog.text
    assert "consider svm_speaker_norm: 0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="msff"):
        speakers.warn_if_few_clips(["01"] * 3 + ["02"] * 4 + ["03"], "svm_speaker_norm")
    assert caplog.text == ""
