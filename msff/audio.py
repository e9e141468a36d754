"""Audio: loudness, rate scales, 300 ms segments, spectrogram images, openSMILE features.

Spectrogram images follow the paper: the speech is resampled at each rate scale
(1.0, 0.75, 0.5, 0.25), cut into segments of ``segment_ms`` with ``overlap``, and each
segment's STFT log-magnitude is resized to a square image. ``spectrogram="logmel"``
pools the STFT power into ``n_mels`` mel bands first (the rows then follow pitch
perception: half of them below ~1.5 kHz instead of an eighth). A scale s resamples the
16 kHz speech to s x 16 kHz, so a segment keeps its duration and its image covers
0 to s x 8 kHz: the lower scales zoom into the low frequencies where pitch and the
first formants live. The segments of all scales start at the same times. Scales below
1.0 are training augmentation; test time uses 1.0.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_EPS = 1e-10  # floor of magnitudes before the log
# The reference level never drops below this STFT magnitude (about -90 dB of a full-scale
# tone), so a silent clip stays black instead of having its noise floor stretched to white.
_MIN_REFERENCE = 1e-3
SPECTROGRAMS = ("stft", "logmel")


def segment_starts(n_samples: int, sample_rate: int, segment_ms: float, overlap: float):
    """Start sample of each segment; a clip shorter than one segment gives one (padded)."""
    length = int(round(sample_rate * segment_ms / 1000))
    hop = max(1, int(round(length * (1 - overlap))))
    if n_samples <= length:
        return np.array([0]), length
    return np.arange(0, n_samples - length + 1, hop), length


def spectrogram_images(
    waveform: np.ndarray,
    sample_rate: int,
    scales: list[float],
    segment_ms: float = 300,
    overlap: float = 0.5,
    window_ms: float = 25,
    hop_ms: float = 5,
    image_size: int = 224,
    top_db: float = 80,
    spectrogram: str = "stft",
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spectrogram images of every segment at every rate scale.

    Returns ``images`` (R, K, image_size, image_size) uint8 and the segment start times
    in seconds (K,). Pixel 255 is the clip's loudest STFT bin (or mel band) at that scale
    (before the bilinear resize), 0 is ``top_db`` below it or quieter; rows run from high
    (first) to low (last) frequency, columns in time. ``spectrogram`` is ``stft`` (the
    paper's linear frequency axis) or ``logmel`` (``n_mels`` bands from ``fmin`` to
    ``fmax``, at most the scale's Nyquist frequency; None: the Nyquist frequency).
    """
    if spectrogram not in SPECTROGRAMS:
        raise ValueError(f"spectrogram={spectrogram!r} is not one of {SPECTROGRAMS}")
    import librosa
    from PIL import Image

    starts, _ = segment_starts(len(waveform), sample_rate, segment_ms, overlap)
    images = np.zeros((len(scales), len(starts), image_size, image_size), np.uint8)
    for r, scale in enumerate(scales):
        rate = int(round(sample_rate * scale))
        y = (
            waveform
            if rate == sample_rate
            else librosa.resample(waveform, orig_sr=sample_rate, target_sr=rate, res_type="soxr_hq")
        )
        window = max(16, int(round(rate * window_ms / 1000)))
        hop = max(1, int(round(rate * hop_ms / 1000)))
        seg_len = int(round(rate * segment_ms / 1000))
        if spectrogram == "logmel":
            # A power-of-two FFT over the same window: finer bins, so no narrow low mel
            # band falls between two of them and stays empty.
            n_fft = 1 << (window - 1).bit_length()
            top = rate / 2 if fmax is None else min(fmax, rate / 2)
            bands = _mel_bands(rate, n_fft, n_mels, fmin, top)
        else:
            n_fft = window
        magnitudes = []
        for start in starts:
            s = int(round(start * scale))
            segment = y[s : s + seg_len]
            if len(segment) < seg_len:
                segment = np.pad(segment, (0, seg_len - len(segment)))
            magnitude = np.abs(
                librosa.stft(segment, n_fft=n_fft, hop_length=hop, win_length=window, center=True)
            )
            # Mel bands hold the square root of their pooled power: a magnitude again, so
            # the reference level and the dB scale below serve both kinds.
            if spectrogram == "logmel":
                magnitude = np.sqrt(bands @ magnitude**2)
            magnitudes.append(magnitude)
        peak = max(float(m.max()) for m in magnitudes)
        for k, m in enumerate(magnitudes):
            db = librosa.amplitude_to_db(m, ref=max(peak, _MIN_REFERENCE), amin=_EPS, top_db=None)
            scaled = np.clip((db + top_db) / top_db, 0, 1)[::-1]  # low frequencies at the bottom
            image = Image.fromarray(scaled.astype(np.float32), mode="F").resize(
                (image_size, image_size), Image.Resampling.BILINEAR
            )
            images[r, k] = np.round(np.clip(np.asarray(image), 0, 1) * 255).astype(np.uint8)
    return images, starts / sample_rate


@cache
def _mel_bands(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    # Building the filter bank costs more than a clip's STFTs: build it once per scale.
    import librosa

    return librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def segment_peak_db(images: np.ndarray, top_db: float) -> np.ndarray:
    """The loudest pixel of each segment image (R, K, H, W) in dB under the clip's peak.

    (R, K) float32 from ``-top_db`` (a black image: silence, or a pause in the speech)
    to 0 (the segment holds the clip's peak).
    """
    return (images.max(axis=(2, 3)).astype(np.float32) / 255 - 1) * np.float32(top_db)


IS09_NAME = "IS09_emotion"


@cache
def _is09():
    # Building the extractor costs more than running it on a clip: build it once.
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.IS09,
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def opensmile_functionals(waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """The 384 IS09_emotion functionals of a waveform (the config the opensmile wheel ships)."""
    table = _is09().process_signal(waveform.astype(np.float32), sample_rate)
    return table.to_numpy(np.float32).reshape(-1), list(table.columns)
