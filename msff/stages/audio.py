"""Stages spectrograms and opensmile, from the audio cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from msff import audio, cache
from msff.errors import BadClipError
from msff.stages import log, recording_bad_clips, upstream_error


@contextmanager
def _waveform(path: str | Path) -> Iterator[tuple[h5py.Dataset, dict]]:
    """The audio cache's waveform dataset (read in blocks by its users) and its attributes."""
    upstream_error(path, "extract_audio")
    with h5py.File(path, "r") as f:
        yield f["waveform"], cache.attrs(path)


def spectrograms(
    clip: str,
    audio_h5: str | Path,
    out: str | Path,
    scales: list[float],
    segment_ms: float,
    overlap: float,
    window_ms: float,
    hop_ms: float,
    image_size: int,
    top_db: float,
    spectrogram: str = "stft",
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> str:
    """Write the spectrogram images of every segment at every rate scale.

    The file records what was made (kind, mel bands, dB range) and each segment's
    loudest pixel in dB, which training reads to leave out quiet segments.
    """

    def work():
        with _waveform(audio_h5) as (waveform, meta), cache.atomic_h5(out, clip) as f:
            rate = meta["sample_rate"]
            starts, _ = audio.segment_starts(len(waveform), rate, segment_ms, overlap)
            images = f.create_dataset(
                "images",
                shape=(len(scales), len(starts), image_size, image_size),
                dtype=np.uint8,
                compression="gzip",
                compression_opts=1,
                chunks=(1, 1, image_size, image_size),
            )
            blocks = audio.spectrogram_blocks(
                waveform,
                rate,
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
            peak_db = np.zeros(images.shape[:2], np.float32)
            for r, k, block in blocks:
                images[r, k : k + len(block)] = block
                peak_db[r, k : k + len(block)] = audio.segment_peak_db(block[None], top_db)[0]
            f.create_dataset("scales", data=np.asarray(scales, np.float32))
            f.create_dataset("segment_start_s", data=(starts / rate).astype(np.float32))
            f.create_dataset("segment_peak_db", data=peak_db)
            made = dict(spectrogram=spectrogram, top_db=top_db, window_ms=window_ms, hop_ms=hop_ms)
            if spectrogram == "logmel":  # h5py attributes cannot be None: fmax only when set
                made.update(n_mels=n_mels, fmin=fmin, **({} if fmax is None else {"fmax": fmax}))
            f.attrs.update(
                segment_ms=segment_ms,
                overlap=overlap,
                silent=meta["silent"],
                note=meta["note"],
                **made,
            )
        log.info("clip %s: %d segments x %d scales", clip, len(starts), len(scales))

    return recording_bad_clips(clip, out, work)


def opensmile(
    clip: str, audio_h5: str | Path, out: str | Path, feature_set: str = audio.IS09_NAME
) -> str:
    """Write the openSMILE functionals of the clip's audio.

    ``feature_set``: IS09_emotion (384 values) or ComParE_2016 (6,373), as
    :data:`msff.audio.FEATURE_SETS` computes them. Features holding NaN or infinity make
    the clip bad (an error cache naming it): the SVM then scores it as unheard instead of
    failing on it.
    """

    def work():
        with _waveform(audio_h5) as (waveform, meta):
            values, names = audio.opensmile_functionals(waveform, meta["sample_rate"], feature_set)
            bounds = audio.functional_windows(len(waveform), meta["sample_rate"], feature_set)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            shown = ", ".join(str(names[i]) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise BadClipError(
                f"{audio_h5}: non-finite openSMILE features ({len(bad)} of {len(values)}"
                f" NaN or infinite: {shown})"
            )
        with cache.atomic_h5(out, clip) as f:
            f.create_dataset("features", data=values)
            # A dataset, not an attribute: ComParE's 6,373 names exceed HDF5's 64 kB limit
            # on an attribute.
            f.create_dataset("feature_names", data=names, dtype=h5py.string_dtype())
            f.attrs.update(
                feature_set=feature_set,
                # > 1: a long ComParE clip's functionals, the mean of its windows' (WINDOW_S).
                functional_windows=len(bounds) - 1,
                silent=meta["silent"],
                note=meta["note"],
            )

    return recording_bad_clips(clip, out, work)
