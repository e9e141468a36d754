import h5py
import numpy as np
import pytest
import torch

from msff import audio, media
from msff.datasets import SpectrogramAugment, SpectrogramSegments, add_noise, mask_bands
from msff.errors import ConfigError
from msff.models.vgg19 import standardised_input
from msff.stages.audio import opensmile, spectrograms
from msff.stages.media import extract_audio

from .conftest import SPEECH_ANGRY, SPEECH_NEUTRAL


def test_segments_are_300ms_with_half_overlap():
    starts, length = audio.segment_starts(16000 * 3, 16000, 300, 0.5)
    assert length == 4800
    assert np.all(np.diff(starts) == 2400)
    assert starts[-1] + length <= 48000 < starts[-1] + length + 2400


def test_spectrogram_images_of_real_speech():
    waveform = media.audio(SPEECH_ANGRY)
    scales = [1.0, 0.75, 0.5, 0.25]
    images, starts = audio.spectrogram_images(waveform, 16000, scales, image_size=224)
    n_segments = (len(waveform) - 4800) // 2400 + 1
    assert images.shape == (4, n_segments, 224, 224) and images.dtype == np.uint8
    np.testing.assert_allclose(np.diff(starts), 0.15)
    for r in range(len(scales)):
        assert images[r].max() >= 240  # the clip's peak at that scale, blurred by the resize
        assert images[r].std() > 20  # a spread of levels, not a flat image
    # Speech carries its energy below ~1 kHz: at scale 1.0 (0-8 kHz) the lowest eighth of
    # the rows is brighter than the top half, in the loudest segment.
    loud = images[0, images[0].reshape(n_segments, -1).mean(1).argmax()].astype(float)
    assert loud[-28:].mean() > loud[:112].mean() + 30


def test_lower_rate_scales_zoom_into_low_frequencies():
    waveform = media.audio(SPEECH_ANGRY)
    images, _ = audio.spectrogram_images(waveform, 16000, [1.0, 0.25], image_size=112)
    # 0-2 kHz fills the whole image at scale 0.25 but only its bottom quarter at 1.0.
    full, zoomed = images[0].astype(float), images[1].astype(float)
    assert zoomed[:, :56].mean() > full[:, :56].mean() + 10


def test_short_and_silent_clips():
    images, starts = audio.spectrogram_images(
        np.zeros(1600, np.float32), 16000, [1.0], image_size=32
    )
    assert images.shape == (1, 1, 32, 32) and list(starts) == [0.0]
    assert images.max() == 0  # silence is black, not a stretched noise floor


def test_opensmile_is09_functionals_of_real_speech():
    neutral, names = audio.opensmile_functionals(media.audio(SPEECH_NEUTRAL), 16000)
    angry, _ = audio.opensmile_functionals(media.audio(SPEECH_ANGRY), 16000)
    assert neutral.shape == angry.shape == (384,) and len(names) == 384
    assert np.isfinite(neutral).all() and np.isfinite(angry).all()
    assert "F0_sma_max" in names
    energy = names.index("pcm_RMSenergy_sma_max")
    assert angry[energy] > 3 * neutral[energy]  # strong anger is far louder than neutral


def test_noise_augmentation_changes_real_spectrograms_within_shape_and_range():
    waveform = media.audio(SPEECH_ANGRY)
    clean, _ = audio.spectrogram_images(waveform, 16000, [1.0, 0.5], image_size=112)
    noisy = add_noise(clean, np.random.default_rng(0), gaussian_std=8.0, salt_pepper=0.01)
    assert noisy.shape == clean.shape and noisy.dtype == np.uint8
    assert noisy.min() >= 0 and noisy.max() <= 255
    diff = noisy.astype(float) - clean.astype(float)
    # Pixels well inside 0-255 (black silence would clip half the noise away):
    from_mid = (clean > 40) & (clean < 215)
    assert (diff != 0)[from_mid].mean() > 0.9  # std 8 moves almost every one
    # Leaving out the salt-and-pepper pixels, the change is the Gaussian's.
    mid = from_mid & (noisy > 0) & (noisy < 255)
    assert 7.0 < diff[mid].std() < 9.0 and abs(diff[mid].mean()) < 0.5
    # About 1 % of them are set to black or white: std 8 never pushes them that far.
    extreme = ((noisy == 0) | (noisy == 255))[from_mid].mean()
    assert 0.007 < extreme < 0.013
    again = add_noise(clean, np.random.default_rng(0), gaussian_std=8.0, salt_pepper=0.01)
    np.testing.assert_array_equal(noisy, again)  # seeded
    off = add_noise(clean, np.random.default_rng(0), gaussian_std=0.0, salt_pepper=0.0)
    np.testing.assert_array_equal(off, clean)  # no noise, the image itself


def test_spectrograms_stream_in_blocks_with_the_whole_clips_images(monkeypatch):
    # Reading a few samples and a few segments at a time (so every block boundary, and the
    # streamed resampling of each scale, falls mid-segment) gives the images of the whole
    # signal held at once: the clip's loudest bin, the resampling and each segment agree.
    waveform = np.tile(media.audio(SPEECH_ANGRY), 3)
    scales = [1.0, 0.75, 0.5, 0.25]
    whole, starts = audio.spectrogram_images(waveform, 16000, scales, image_size=64)
    monkeypatch.setattr(audio, "READ_BLOCK", 1000)
    monkeypatch.setattr(audio, "SEGMENT_BLOCK", 7)
    streamed, streamed_starts = audio.spectrogram_images(waveform, 16000, scales, image_size=64)
    assert whole.shape[1] > 7 * 8 and len(waveform) > 1000 * 100
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(streamed_starts, starts)
    # The lower scales are the librosa resampling of the whole signal, sample for sample.
    import librosa

    speech = audio._ScaledSpeech(waveform, 16000, 4000)
    resampled = librosa.resample(waveform, orig_sr=16000, target_sr=4000, res_type="soxr_hq")
    pieces = [speech.window(i, i + 3000) for i in range(0, len(resampled), 3000)]
    np.testing.assert_array_equal(np.concatenate(pieces)[: len(resampled)], resampled)


@pytest.mark.parametrize(
    "feature_set, wheel_set, width",
    [("IS09_emotion", "IS09", 384), ("ComParE_2016", "ComParE_2016", 6373)],
)
def test_opensmile_streams_a_long_clip_through_its_ring_buffer(feature_set, wheel_set, width):
    # 70 s of real speech: over three times openSMILE's 20 s wave buffer, so the writer
    # waits for the extractor; the functionals are those of the wheel's own config (with
    # its LLD output levels, which msff's leaves out) on the whole signal.
    import opensmile

    waveform = np.tile(media.audio(SPEECH_ANGRY), 20)
    assert len(waveform) > 3 * 20 * 16000
    streamed, names = audio.opensmile_functionals(waveform, 16000, feature_set)
    wheel = opensmile.Smile(opensmile.FeatureSet[wheel_set], opensmile.FeatureLevel.Functionals)
    whole = wheel.process_signal(waveform, 16000)
    assert streamed.shape == (width,)
    np.testing.assert_array_equal(streamed, whole.to_numpy(np.float32).reshape(-1))
    assert names == list(whole.columns)
    # Too short for one frame: NaN, as the wheel gives (the stage rejects it by name).
    assert np.isnan(audio.opensmile_functionals(waveform[:100], 16000, feature_set)[0]).all()


def test_opensmile_stage_writes_compare_features_and_their_names(tmp_path):
    # ComParE's 6,373 names are more than an HDF5 attribute holds: the cache keeps a dataset.
    assert extract_audio("angry", str(SPEECH_ANGRY), tmp_path / "audio.h5", 16000, -60) == ""
    assert opensmile("angry", tmp_path / "audio.h5", tmp_path / "smile.h5", "ComParE_2016") == ""
    values, names = audio.opensmile_functionals(media.audio(SPEECH_ANGRY), 16000, "ComParE_2016")
    with h5py.File(tmp_path / "smile.h5") as f:
        np.testing.assert_array_equal(f["features"][()], values)
        assert list(f["feature_names"].asstr()[()]) == names
        assert f.attrs["feature_set"] == "ComParE_2016" and f.attrs["error"] == ""


def test_a_long_compare_clip_averages_its_windows_functionals(monkeypatch, tmp_path):
    # ComParE holds ~20 MB a minute of speech: past WINDOW_S (5 minutes) a clip is cut into
    # equal windows and their functionals averaged. Here the bound is 8 s, the clip 20 s.
    import opensmile as wheel_module

    monkeypatch.setitem(audio.WINDOW_S, "ComParE_2016", 8.0)
    waveform = np.tile(media.audio(SPEECH_ANGRY), 6)[: 20 * 16000]
    bounds = audio.functional_windows(len(waveform), 16000, "ComParE_2016")
    assert list(bounds) == [0, 106666, 213333, 320000]  # three equal windows, none over 8 s
    wheel = wheel_module.Smile(
        wheel_module.FeatureSet.ComParE_2016, wheel_module.FeatureLevel.Functionals
    )
    expected = np.mean(
        [
            wheel.process_signal(waveform[a:b], 16000).to_numpy(np.float32).reshape(-1)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ],
        axis=0,
        dtype=np.float64,
    ).astype(np.float32)
    values, _ = audio.opensmile_functionals(waveform, 16000, "ComParE_2016")
    np.testing.assert_array_equal(values, expected)
    # The stage records how many windows it averaged; IS09 always reads the whole clip.
    h5 = tmp_path / "audio.h5"
    with h5py.File(h5, "w") as f:
        f["waveform"] = waveform
        f.attrs.update(sample_rate=16000, silent=False, note="", error="")
    assert opensmile("long", h5, tmp_path / "smile.h5", "ComParE_2016") == ""
    with h5py.File(tmp_path / "smile.h5") as f:
        assert f.attrs["functional_windows"] == 3
    assert len(audio.functional_windows(len(waveform), 16000, "IS09_emotion")) == 2


def test_an_unknown_opensmile_feature_set_names_the_known_ones():
    with pytest.raises(ConfigError, match="'GeMAPS' must be one of .*ComParE_2016"):
        audio.opensmile_functionals(media.audio(SPEECH_ANGRY), 16000, "GeMAPS")


def test_logmel_images_give_the_low_frequencies_more_rows():
    waveform = media.audio(SPEECH_ANGRY)
    stft, _ = audio.spectrogram_images(waveform, 16000, [1.0], image_size=64)
    mel, starts = audio.spectrogram_images(
        waveform, 16000, [1.0, 0.5], image_size=64, spectrogram="logmel", n_mels=64
    )
    assert mel.shape == (2, len(starts), 64, 64) and mel.dtype == np.uint8
    assert mel[0].max() >= 240 and mel[1].max() >= 240  # each scale's own peak
    # The axis: a 1 kHz tone sits 1/8 up the STFT's 0-8 kHz rows but a third of the way
    # up the mel rows (Slaney mel: linear to 1 kHz, 15 of its 45.2 units up to 8 kHz),
    # where pitch and the first formants get three times the rows.
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    for kind, expected in (("stft", 64 / 8), ("logmel", 64 * 15 / 45.2)):
        image, _ = audio.spectrogram_images(tone, 16000, [1.0], image_size=64, spectrogram=kind)
        row = image[0, 2].astype(float).mean(1).argmax()
        assert abs((63 - row) - expected) <= 1.5, (kind, row)
    silent, _ = audio.spectrogram_images(
        np.zeros(8000, np.float32), 16000, [1.0], image_size=32, spectrogram="logmel"
    )
    assert silent.max() == 0


def test_the_spectrogram_cache_records_what_was_made_and_each_segments_level(tmp_path):
    wav = tmp_path / "a.audio.h5"
    assert extract_audio("a", str(SPEECH_ANGRY), wav, 16000, -60) == ""
    out = tmp_path / "a.h5"
    assert spectrograms("a", wav, out, [1.0, 0.5], 300, 0.5, 25, 5, 48, 80, "logmel", 40) == ""
    with h5py.File(out) as f:
        assert f.attrs["spectrogram"] == "logmel" and f.attrs["n_mels"] == 40
        assert "fmax" not in f.attrs  # none set: each scale's Nyquist frequency
        images, peak = f["images"][()], f["segment_peak_db"][()]
    assert peak.shape == images.shape[:2] and peak.max() > -1  # the peak, blurred by the resize
    black = images.reshape(*images.shape[:2], -1).max(2) == 0
    assert black.any() and (peak[black] == -80).all() and (peak[~black] > -80).all()
    # Training without the segments 40 dB under the peak: the pauses before and after.
    every = SpectrogramSegments([out], [0], True, standardised_input("image", 48))
    loud = SpectrogramSegments([out], [0], True, standardised_input("image", 48), quiet_db=40)
    kept = {(r, k) for _, r, k in loud.items}
    assert kept == {(r, k) for r, k in zip(*np.nonzero(peak >= -40), strict=True)}
    assert 0 < len(loud) < len(every) == peak.size
    test_time = SpectrogramSegments([out], [0], False, standardised_input("image", 48), quiet_db=40)
    assert len(test_time) == images.shape[1]  # every scale-1.0 segment is scored


def test_band_masks_silence_whole_rows_and_columns_of_real_spectrograms():
    waveform = media.audio(SPEECH_ANGRY)
    images, _ = audio.spectrogram_images(waveform, 16000, [1.0], image_size=64)
    loud = images[0, images[0].reshape(images.shape[1], -1).mean(1).argmax()][None]
    for seed in range(20):
        masked = mask_bands(loud, np.random.default_rng(seed), 1, 1, 0.25)
        rows = (masked[0] == 0).all(1) & ~(loud[0] == 0).all(1)
        cols = (masked[0] == 0).all(0) & ~(loud[0] == 0).all(0)
        assert rows.sum() <= 16 and cols.sum() <= 16  # a quarter of 64 at most
        changed = masked != loud
        assert (masked[changed] == 0).all()  # masking only ever sets silence
        if rows.any():  # one band: its rows are contiguous
            assert np.ptp(np.flatnonzero(rows)) == rows.sum() - 1
    augment = SpectrogramAugment(freq_masks=2, time_masks=2, mask_width=0.2)
    a = augment(loud, np.random.default_rng(1))
    np.testing.assert_array_equal(a, augment(loud, np.random.default_rng(1)))  # seeded
    assert (a == 0).sum() > (loud == 0).sum()
    np.testing.assert_array_equal(SpectrogramAugment()(loud, np.random.default_rng(1)), loud)


@pytest.mark.parametrize("mode", ["image", "frequency"])
def test_standardised_input_is_zero_mean_unit_variance_whatever_the_loudness(mode):
    waveform = media.audio(SPEECH_ANGRY)
    loud, _ = audio.spectrogram_images(waveform, 16000, [1.0], image_size=64)
    images = loud[0]
    soft = (images * 0.5).astype(np.uint8)  # the same speech, its dB range halved
    x, y = standardised_input(mode, 64)(images), standardised_input(mode, 64)(soft)
    assert x.shape == (len(images), 3, 64, 64) and torch.equal(x[:, 0], x[:, 2])
    axes = (2, 3) if mode == "image" else (3,)
    varied = images.reshape(len(images), -1).std(1) > 10  # leave the black pauses out
    assert x[varied].mean(axes).abs().max() < 1e-4
    if mode == "image":
        spread = x[varied].std((2, 3))  # std / (std + 1 grey level): 10 levels give 0.91
        assert (spread > 0.9).all() and (spread <= 1).all()
    assert (x[varied] - y[varied]).abs().mean() < 0.1  # the pattern, not the level
    assert torch.equal(
        standardised_input(mode, 64)(np.zeros((1, 64, 64), np.uint8)).abs().max(), torch.tensor(0.0)
    )
