"""Speaker normalisation on real RAVDESS speech: log-mel frame sequences of three actors."""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile

from msff import speakers

from .conftest import DATA

SPEECH = DATA / "ravdess_speech"


@pytest.fixture(scope="module")
def sequences() -> tuple[list[np.ndarray], np.ndarray]:
    """Per-frame log-mel bands (frames, 32) of 8 clips each of actors 01-03, and the actors."""
    table = pd.read_csv(SPEECH / "labels.csv", dtype=str)
    table = table[table["speaker"].isin(["01", "02", "03"])].groupby("speaker").head(8)
    clips = []
    for path in table["path"]:
        waveform, rate = soundfile.read(SPEECH / path, dtype="float32")
        bands = librosa.feature.melspectrogram(y=waveform, sr=rate, n_mels=32, hop_length=320)
        clips.append(librosa.power_to_db(bands).T.astype(np.float64))
    return clips, table["speaker"].to_numpy()


def test_each_speaker_is_standardised_over_its_own_clips(sequences):
    clips, actors = sequences
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
    clips, actors = sequences
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
    clips, actors = sequences
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
