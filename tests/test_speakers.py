"""Speaker normalisation on real RAVDESS speech: log-mel frame sequences of three actors,
and the spectrogram CNN's input images."""

from __future__ import annotations

import shutil

import h5py
import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile

from msff import cache, config, scores, speakers
from msff.datasets import recentred
from msff.heads import audio_cnn, blstm, common
from msff.stages.audio import spectrograms as spectrogram_stage
from msff.stages.media import extract_audio

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
    # One clip and a prior of 5: its mean and variance weigh 1 against the typical's 5.
    shrunk = speakers.standardise([lone], ["x"], typical, 5.0)[0]
    mean = (lone.mean(0) + 5 * typical["speaker_mean"]) / 6
    var = (((lone - lone.mean(0)) ** 2).mean(0) + 5 * typical["speaker_var"]) / 6
    np.testing.assert_allclose(shrunk, (lone - mean) / np.sqrt(var), rtol=1e-9, atol=1e-12)
    assert np.abs(shrunk.mean(0)).mean() > 0.1  # unlike its own statistics', not centred
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
    # A speaker the run never saw, learnt from its sequences: actor 02's under a new name
    # get what 02's got in the workflow.
    of_02 = [i for i, r in enumerate(records) if r["speaker"] == "02"]
    assert common.needs_enrolment(loaded[1], "new")
    assert not common.needs_enrolment(loaded[1], "02")
    assert blstm.enrol(loaded, "new", [clips[i] for i in of_02])
    assert not blstm.enrol(loaded, "new", [clips[i] for i in of_02])  # kept
    for i in of_02:
        want = written.loc[records[i]["clip"], classes].to_numpy(float)
        np.testing.assert_allclose(blstm.infer(loaded, clips[i], speaker="new"), want, atol=1e-5)


def test_a_sheet_of_lone_speakers_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="msff"):
        speakers.warn_if_few_clips(["1001", "1002", "1002", "1003"], "svm_speaker_norm")
    assert "median speaker has 1 clip(s)" in caplog.text
    assert "consider svm_speaker_norm: 0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="msff"):
        speakers.warn_if_few_clips(["01"] * 3 + ["02"] * 4 + ["03"], "svm_speaker_norm")
    assert caplog.text == ""


@pytest.fixture(scope="module")
def spectrogram_caches(repo_config, tmp_path_factory):
    """The cpu preset's spectrogram caches of 4 clips each of actors 01 and 02 and one of
    actor 03 (a speaker of one clip), as records of a sheet (01 trains, 02 validates)."""
    cfg = dict(repo_config, preset="cpu")
    audio = config.preset(cfg)["audio"]
    args = {k: v for k, v in audio.items() if k not in ("sample_rate", "silence_dbfs")}
    table = pd.read_csv(SPEECH / "labels.csv", dtype=str)
    table["class"] = [config.class_of(label, repo_config["labels"]) for label in table["label"]]
    table = table[table["class"].notna()]
    table = pd.concat(
        [table[table["speaker"] == "01"].head(4), table[table["speaker"] == "02"].head(4)]
        + [table[table["speaker"] == "03"].head(1)]
    )
    folder = tmp_path_factory.mktemp("spectrograms")
    records, caches = [], {}
    for i, row in enumerate(table.itertuples()):
        clip = f"c{i}"
        wav = folder / f"{clip}.audio.h5"
        assert extract_audio(clip, str(SPEECH / row.path), wav, audio["sample_rate"], -60) == ""
        caches[clip] = str(folder / f"{clip}.h5")
        assert spectrogram_stage(clip, wav, caches[clip], **args) == ""
        split = "train" if row.speaker == "01" else "val"
        records.append(dict(clip=clip, split=split, speaker=row.speaker, **{"class": row[-1]}))
    return records, caches


def test_spectrogram_images_lose_their_speakers_band_levels(spectrogram_caches, tmp_path):
    """The CNN's input: each speaker's heard pixels less its mean band levels, about 128."""
    records, caches = spectrogram_caches
    profiles, kept = audio_cnn.speaker_profiles(records, caches, prior=0.0)
    assert set(common.unpacked_speakers(kept["speakers"])["known"]) == {"01", "02"}

    def recentred_clip(path, profile):
        with h5py.File(path) as f:
            images = f["images"][()]
        levels = profile.reshape(images.shape[0], -1)
        return np.stack([recentred(images[s], levels[s]) for s in range(len(images))])

    def band_means(images):  # (scales, bands): over the heard pixels, as band_levels
        heard = (images > 0).sum(axis=(1, 3))
        return images.astype(np.float64).sum(axis=(1, 3)) / np.maximum(heard, 1)

    for actor in ("01", "02"):
        mine = [i for i, r in enumerate(records) if r["speaker"] == actor]
        raw = []
        for i in mine:
            with h5py.File(caches[records[i]["clip"]]) as f:
                raw.append(band_means(f["images"][()]))
        # A speaker's levels: the mean of its clips' band means (each clip counts once), the
        # same for each of its clips.
        for i in mine:
            np.testing.assert_allclose(profiles[i], np.mean(raw, axis=0).ravel(), atol=1e-9)
        levels = []
        for i in mine:
            path = caches[records[i]["clip"]]
            out = recentred_clip(path, profiles[i])
            with h5py.File(path) as f:  # nothing heard stays nothing heard, and the reverse
                np.testing.assert_array_equal(out == 0, f["images"][()] == 0)
            levels.append(band_means(out))
        # So over a speaker's clips every band sits at grey 128, up to the pixels uint8
        # clips: under a grey level on average.
        assert np.abs(np.mean(levels, axis=0) - 128).mean() < 1.0
    # A microphone that colours what is heard in every clip of actor 01 (a band tilt of up
    # to 12 grey levels, ~4 dB) changes its raw images, not what the CNN sees.
    coloured, tilt = dict(caches), None
    for r in records:
        if r["speaker"] != "01":
            continue
        with h5py.File(caches[r["clip"]]) as f:
            images = f["images"][()].astype(np.int16)
        tilt = np.linspace(0, 12, images.shape[2]).round().astype(np.int16)
        coloured[r["clip"]] = str(tmp_path / f"{r['clip']}.h5")
        shutil.copy(caches[r["clip"]], coloured[r["clip"]])
        with h5py.File(coloured[r["clip"]], "a") as f:
            heard = np.clip(images + tilt[None, None, :, None], 1, 255)
            f["images"][...] = np.where(images > 0, heard, 0).astype(np.uint8)
    tilted, _ = audio_cnn.speaker_profiles(records, coloured, prior=0.0)
    for i, r in enumerate(records):
        if r["speaker"] != "01":
            continue
        before = recentred_clip(caches[r["clip"]], profiles[i]).astype(int)
        after = recentred_clip(coloured[r["clip"]], tilted[i]).astype(int)
        with h5py.File(caches[r["clip"]]) as f:
            raw = f["images"][()].astype(int)
        unclipped = (raw + tilt[None, None, :, None] <= 255) & (before > 1) & (before < 255)
        assert unclipped.mean() > 0.5
        assert np.abs(after - before)[unclipped].max() <= 1  # rounding
        assert np.abs(raw - before).mean() > 5  # and the normalisation did change the images


def test_the_spectrogram_cnn_keeps_its_speakers_for_predict(
    spectrogram_caches, repo_config, tmp_path
):
    """finetune_audio_cnn keeps its speakers' band levels; audio_features and infer use them."""
    records, caches = spectrogram_caches
    classes = repo_config["labels"]["classes"]
    heads = config.head_arguments(dict(repo_config, preset="cpu"))
    model = tmp_path / "cnn.pt"
    settings = dict(heads["audio_cnn"]["settings"], epochs=1)
    arguments = dict(heads["audio_cnn"], settings=settings, speaker_norm=5.0)
    audio_cnn.finetune_audio_cnn(
        records, caches, model, tmp_path / "cnn.json", classes, weights=None, device="cpu",
        **arguments,
    )  # fmt: skip
    features = tmp_path / "features.h5"
    audio_cnn.audio_features(model, records, caches, features, device="cpu")
    loaded = audio_cnn.load(model)
    assert loaded[1]["speaker_norm"] == 5.0
    assert set(loaded[1]["speakers"]["known"]) == {"01", "02"}  # not the lone 03

    def inferred(record, speaker):
        parts = list(audio_cnn.infer(loaded, caches[record["clip"]], speaker=speaker))
        return np.concatenate([f for f, _ in parts])

    with h5py.File(features) as f:
        written = {r["clip"]: f[r["clip"]][()].astype(np.float32) for r in records}
    for r in records:  # the features file stores float16
        got = inferred(r, r["speaker"]).astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(got, written[r["clip"]], rtol=2e-3, atol=2e-3)
    # Unnamed, a clip of actor 02 is a speaker of one clip: its own levels, shrunk toward
    # the typical (training) speaker 01's, grey levels away from 02's; other features.
    first = next(r for r in records if r["speaker"] == "02")
    path, meta = caches[first["clip"]], loaded[1]
    alone, in_run = audio_cnn.clip_profile(meta, path), audio_cnn.clip_profile(meta, path, "02")
    assert np.abs(alone - in_run).mean() > 1.0
    assert not np.array_equal(inferred(first, None), inferred(first, "02"))
    # The lone actor 03 needs nothing kept: alone, it is what it was in training.
    last = records[-1]
    got = inferred(last, None).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, written[last["clip"]], rtol=2e-3, atol=2e-3)
    # A speaker the run never saw, learnt from its clips (msff predict --speaker NEW): actor
    # 02's clips under a new name get 02's levels in the run, so the workflow's features.
    of_02 = [r for r in records if r["speaker"] == "02"]
    assert audio_cnn.enrol(loaded, "new", [caches[r["clip"]] for r in of_02])
    assert not audio_cnn.enrol(loaded, "new", [caches[r["clip"]] for r in of_02])  # kept
    np.testing.assert_allclose(
        audio_cnn.clip_profile(meta, path, "new"), audio_cnn.clip_profile(meta, path, "02")
    )
    got = inferred(first, "new").astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, written[first["clip"]], rtol=2e-3, atol=2e-3)
