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

import atexit
import os
import tempfile
import threading
from functools import cache
from pathlib import Path

import numpy as np

from msff.errors import ConfigError

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


# Segments whose spectrograms are computed at once: memory holds one block of them, so a
# recording of an hour costs what a minute does (128 segments are 19 s of speech).
SEGMENT_BLOCK = 128
# Samples of the clip's audio read (and resampled) at a time.
READ_BLOCK = 2**18


class _ScaledSpeech:
    """The speech of a clip at one rate scale, read forward window by window.

    ``waveform`` is anything sliceable (an array, or the cache's HDF5 dataset, read a block
    at a time); a rate other than ``sample_rate`` is resampled as a stream (soxr HQ, the
    same samples as ``librosa.resample(..., res_type="soxr_hq")`` of the whole signal).
    Memory holds the samples between the last window asked for and the read position.
    """

    def __init__(self, waveform, sample_rate: int, rate: int):
        import soxr

        self.source, self.n_source, self.read_to = waveform, len(waveform), 0
        self.resampler = (
            None
            if rate == sample_rate
            else soxr.ResampleStream(sample_rate, rate, 1, dtype="float32", quality="HQ")
        )
        # librosa's length of a resampled signal: ceil(n x ratio), padded or cut to it.
        self.length = int(np.ceil(self.n_source * (rate / sample_rate)))
        self.buffer, self.offset = np.zeros(0, np.float32), 0

    def window(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` (never before an earlier window's start), zero-padded."""
        stop_in_signal = min(stop, self.length)
        while self.offset + len(self.buffer) < stop_in_signal and self.read_to < self.n_source:
            block = np.asarray(self.source[self.read_to : self.read_to + READ_BLOCK], np.float32)
            self.read_to += len(block)
            if self.resampler is not None:
                block = self.resampler.resample_chunk(block, last=self.read_to >= self.n_source)
            keep = self.buffer[max(0, start - self.offset) :]
            self.offset += len(self.buffer) - len(keep)
            self.buffer = np.concatenate([keep, block])
        keep = max(0, start - self.offset)
        self.buffer, self.offset = self.buffer[keep:], self.offset + keep
        out = self.buffer[start - self.offset : stop_in_signal - self.offset]
        return np.pad(out, (0, stop - start - len(out)))


def spectrogram_blocks(
    waveform,
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
):
    """Spectrogram images of every segment at every rate scale, a block of segments at a time.

    ``waveform``: the clip's speech (an array or an HDF5 dataset, read in blocks). Yields
    ``(r, k, images)``: the images (n, image_size, image_size) uint8 of scale ``scales[r]``
    for segments ``k`` to ``k + n``. Pixel 255 is the clip's loudest STFT bin (or mel band)
    at that scale (before the bilinear resize), 0 is ``top_db`` below it or quieter; rows
    run from high (first) to low (last) frequency, columns in time. ``spectrogram`` is
    ``stft`` (the paper's linear frequency axis) or ``logmel`` (``n_mels`` bands from
    ``fmin`` to ``fmax``, at most the scale's Nyquist frequency; None: the Nyquist
    frequency). Each scale is read twice: once for its loudest bin, once for the images,
    so memory does not grow with the clip's length.
    """
    if spectrogram not in SPECTROGRAMS:
        raise ValueError(f"spectrogram={spectrogram!r} is not one of {SPECTROGRAMS}")
    import librosa
    from PIL import Image

    starts, _ = segment_starts(len(waveform), sample_rate, segment_ms, overlap)

    def magnitudes(scale: float):
        rate = int(round(sample_rate * scale))
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
        speech = _ScaledSpeech(waveform, sample_rate, rate)
        for k in range(0, len(starts), SEGMENT_BLOCK):
            segments = np.stack(
                [
                    speech.window(s, s + seg_len)
                    for s in (int(round(start * scale)) for start in starts[k : k + SEGMENT_BLOCK])
                ]
            )
            magnitude = np.abs(
                librosa.stft(segments, n_fft=n_fft, hop_length=hop, win_length=window, center=True)
            )
            # Mel bands hold the square root of their pooled power: a magnitude again, so
            # the reference level and the dB scale below serve both kinds.
            if spectrogram == "logmel":
                magnitude = np.stack([np.sqrt(bands @ m**2) for m in magnitude])
            yield k, magnitude

    for r, scale in enumerate(scales):
        peak = max(float(m.max()) for _, m in magnitudes(scale))
        reference = max(peak, _MIN_REFERENCE)
        for k, block in magnitudes(scale):
            images = np.empty((len(block), image_size, image_size), np.uint8)
            for i, m in enumerate(block):
                db = librosa.amplitude_to_db(m, ref=reference, amin=_EPS, top_db=None)
                scaled = np.clip((db + top_db) / top_db, 0, 1)[::-1]  # low frequencies at bottom
                image = Image.fromarray(scaled.astype(np.float32), mode="F").resize(
                    (image_size, image_size), Image.Resampling.BILINEAR
                )
                images[i] = np.round(np.clip(np.asarray(image), 0, 1) * 255).astype(np.uint8)
            yield r, k, images


def spectrogram_images(
    waveform,
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
    """Every segment's images in one array, for short clips and tests.

    Returns ``spectrogram_blocks``' images as (R, K, image_size, image_size) uint8 and the
    segment start times in seconds (K,).
    """
    starts, _ = segment_starts(len(waveform), sample_rate, segment_ms, overlap)
    images = np.zeros((len(scales), len(starts), image_size, image_size), np.uint8)
    blocks = spectrogram_blocks(
        waveform,
        sample_rate,
        scales,
        segment_ms,
        overlap,
        window_ms,
        hop_ms,
        image_size,
        top_db,
        spectrogram,
        n_mels,
        fmin,
        fmax,
    )
    for r, k, block in blocks:
        images[r, k : k + len(block)] = block
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


# openSMILE's external wave input (the wheel's shared/standard_external_wave_input.conf.inc)
# with one change: the wave level is a ring buffer instead of a level that grows to hold the
# whole recording, so a clip of any length streams through it. IS09's later levels are ring
# buffers already, and its LLD level (32 values every 10 ms) is all the functionals keep.
# Kept here, not in a data file, so that editing it reruns the opensmile stage (codedeps).
STREAMED_INPUT = r"""
[componentInstances:cComponentManager]
instance[extsource].type=cExternalAudioSource

[extsource:cExternalAudioSource]
writer.dmLevel=wave
writer.levelconf.growDyn=0
writer.levelconf.isRb=1
writer.levelconf.nT=\cm[bufferSamples{320000}:ring buffer length in samples]
sampleRate=\cm[sampleRate{16000}:sample rate]
nBits=\cm[nBits{16}:sample bits]
channels=\cm[channels{1}:channel size]
"""


# The levels the clip-level functionals read (the LLDs and their deltas: ``bufferModeConf``
# of the wheel's configs) hold the whole clip. The wheel's BufferMode.conf.inc lets them
# grow by reallocation, which peaks at twice what they hold; sized to the clip's frames
# (one every 10 ms in both sets, plus a margin) they are allocated once: the same values,
# ~230 MB less for an hour of speech with ComParE (bench/README.md, memory).
LLD_BUFFER = r"""
writer.levelconf.growDyn = 0
writer.levelconf.isRb = 0
writer.levelconf.nT = \cm[lldFrames{1000}:frames of the levels the clip-level functionals read]
"""
LLD_STEP_S = 0.010
LLD_MARGIN = 64

# The openSMILE feature sets the opensmile stage can compute (config: the preset's
# ``svm_features``), each as the wheel ships it (``{set}.conf`` under its config folder) less
# its LLD output levels (copies of every 10-ms LLD frame for an LLD sink that the
# functionals never use, kept for the whole clip): the same functionals, with less of the
# recording kept (IS09: ~2 MB a minute instead of ~5; bench/README, memory). What is left to
# grow is the LLD levels the clip-level functionals read at the end (``frameMode = full``).
#   IS09_emotion   384 functionals of 16 LLDs and their deltas (the paper's baseline)
#   ComParE_2016   6,373 functionals of 65 LLDs and their deltas (the ComParE challenges'
#                  baseline set; with a linear SVM it generalises better to unseen RAVDESS
#                  speakers, bench/README.md)
FEATURE_SETS = {
    "IS09_emotion": ("is09-13", "IS09_emotion_core", "is09_func"),
    "ComParE_2016": (
        "compare",
        "ComParE_2016_core",
        "is13_functionalsA;is13_functionalsB;is13_functionalsNz;is13_functionalsF0;"
        "is13_functionalsLLD;is13_functionalsDelta",
    ),
}
# ComParE's functionals read 130 LLD and delta tracks of the whole clip at its end: ~20 MB a
# minute of speech (bench/README.md, memory). A clip longer than this is cut into equal
# windows no longer than it, and its ComParE functionals are the mean of theirs, so memory
# stays bounded whatever the length (bench/README.md, memory); a clip up to it (every clip
# of the emotion data sets: seconds) gets the wheel's exact values. IS09 holds ~6 MB a
# minute and always reads the whole clip, as the paper's baseline.
WINDOW_S = {"ComParE_2016": 300.0}
IS09_NAME = "IS09_emotion"
FUNCTIONALS = r"""
[componentInstances:cComponentManager]
instance[dataMemory].type=cDataMemory
printLevelStats=0
nThreads=1

\{\cm[source{?}:include external source]}
\{{folder}/{core}.lld.conf.inc}
\{{folder}/{core}.func.conf.inc}

[componentInstances:cComponentManager]
instance[funcconcat].type=cVectorConcat

[funcconcat:cVectorConcat]
reader.dmLevel = {levels}
writer.dmLevel = func
includeSingleElementFields = 1

\{\cm[sink{?}:include external sink]}
"""


def _config_file(text: str, prefix: str) -> str:
    """``text`` written to a temporary file once per process (openSMILE includes files)."""
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=".conf")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    atexit.register(os.unlink, path)
    return path


@cache
def _streamed_input_file() -> str:
    """STREAMED_INPUT as a file."""
    return _config_file(STREAMED_INPUT, "msff_opensmile_input_")


@cache
def _lld_buffer_file() -> str:
    """LLD_BUFFER as a file."""
    return _config_file(LLD_BUFFER, "msff_opensmile_lld_")


@cache
def _extractor(feature_set: str):
    # Building the extractor costs more than running it on a clip: build it once.
    import opensmile

    if feature_set not in FEATURE_SETS:
        raise ConfigError(
            f"openSMILE feature set {feature_set!r} must be one of {sorted(FEATURE_SETS)}"
        )
    folder, core, levels = FEATURE_SETS[feature_set]
    text = (
        FUNCTIONALS.replace(
            "{folder}", str(Path(opensmile.__file__).parent / "core" / "config" / folder)
        )
        .replace("{core}", core)
        .replace("{levels}", levels)
    )
    return opensmile.Smile(
        feature_set=_config_file(text, f"msff_{feature_set}_"), feature_level="func"
    )


def functional_windows(n_samples: int, sample_rate: int, feature_set: str) -> np.ndarray:
    """The sample bounds of the windows whose functionals are averaged (one: the whole clip)."""
    window = WINDOW_S.get(feature_set)
    count = 1 if window is None else max(1, int(np.ceil(n_samples / (window * sample_rate))))
    return np.linspace(0, n_samples, count + 1).astype(np.int64)


def opensmile_functionals(
    waveform, sample_rate: int, feature_set: str = IS09_NAME
) -> tuple[np.ndarray, list[str]]:
    """The openSMILE functionals of a clip's speech, and their names.

    ``feature_set``: a key of ``FEATURE_SETS``, computed as the config the opensmile wheel
    ships (384 values for IS09_emotion, 6,373 for ComParE_2016). ``waveform``: an array or
    the cache's HDF5 dataset. It is streamed to openSMILE a block at a time (its wave level
    a ring buffer: ``STREAMED_INPUT``); what grows with the clip's length is the LLD levels
    the functionals read, allocated once at the clip's size (``LLD_BUFFER``). The values
    are those of ``Smile.process_signal`` on the whole signal, except for a ComParE clip
    longer than ``WINDOW_S``: the mean over its windows (:func:`functional_windows`). A clip
    too short for one frame gives NaN (as ``process_signal``).
    """
    extractor = _extractor(feature_set)
    bounds = functional_windows(len(waveform), sample_rate, feature_set)
    windows = [
        _window_functionals(extractor, waveform, start, stop, sample_rate)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    values = windows[0] if len(windows) == 1 else np.mean(windows, axis=0, dtype=np.float64)
    return np.asarray(values, np.float32), list(extractor.feature_names)


def _window_functionals(extractor, waveform, start: int, stop: int, sample_rate: int):
    """The functionals of ``waveform[start:stop]``, streamed to openSMILE."""
    from opensmile.core.config import config as smile_config

    # The options the wheel's Smile uses (sink, LLD buffers, full-input functionals), with
    # the streamed source in place of its growing one (opensmile==2.6.0, pinned).
    options = extractor._options() | {
        "source": _streamed_input_file(),
        "sampleRate": sample_rate,
        "nBits": 16,
        "bufferSamples": 20 * sample_rate,
        "bufferModeConf": _lld_buffer_file(),
        "lldFrames": int((stop - start) / (LLD_STEP_S * sample_rate)) + LLD_MARGIN,
    }
    rows: list[np.ndarray] = []
    smile = extractor._smile(options=options)
    smile.external_sink_set_callback_ex(
        smile_config.EXTERNAL_OUTPUT_COMPONENT, lambda data, meta: rows.append(data.copy())
    )
    failure: list[BaseException] = []

    def run():
        try:
            smile.run()
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)

    runner = threading.Thread(target=run, name="opensmile")
    runner.start()
    try:
        for block_start in range(start, stop, READ_BLOCK // 4):
            block_stop = min(stop, block_start + READ_BLOCK // 4)
            block = np.asarray(waveform[block_start:block_stop], np.float32) * 32768
            data = block.astype(np.int16).tobytes()  # as Smile.process_signal converts
            while not smile.external_audio_source_write_data(
                smile_config.EXTERNAL_SOURCE_COMPONENT, data
            ):
                if failure or not runner.is_alive():
                    break
                runner.join(0.005)  # the ring buffer is full: let openSMILE read it
    finally:
        smile.external_audio_source_set_eoi(smile_config.EXTERNAL_SOURCE_COMPONENT)
        runner.join()
        smile.free()
    if failure:
        raise failure[0]
    values = rows[0] if rows else np.full(len(extractor.feature_names), np.nan)
    return np.asarray(values, np.float32).reshape(-1)
