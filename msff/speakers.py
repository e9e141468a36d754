"""Speaker normalisation: each speaker's features standardised over that speaker's own clips.

A voice (or a face) adds something to every clip of its owner: pitch range, loudness,
timbre, the shape of a face. Standardising each speaker's features by the speaker's own
mean and variance over all of its clips takes that out and leaves how a clip departs
from its speaker. No label is used, so the clips of a test speaker may serve: the
sheet's ``speaker`` column groups them.

A speaker with few clips would be standardised by noise (and by the emotions those few
clips happen to show), so both statistics are shrunk toward the typical training
speaker's by ``prior`` pseudo-clips: a speaker of ``n`` clips gets mean
``(n * own + prior * typical) / (n + prior)``, its variance likewise. A clip scored
alone (``msff predict``) is a speaker of one clip. On RAVDESS speech a speaker's own
unshrunk statistics from 10 clips lost 18 accuracy points against no normalisation,
the shrunk ones gained (bench/README.md, "Speaker normalisation").

A clip is an (n_frames, width) array: one row (openSMILE functionals) or a sequence
(a backbone's per-frame or per-segment features). A speaker's mean is the mean of its
clips' means (each clip counts once, however long), its variance the mean over its clips
of the mean squared deviation of their rows from that mean. A clip of no rows (no face
found, nothing heard) plays no part and comes back as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from msff.logs import log

# Fewer clips than this for the median speaker: the normalisation may cost accuracy
# (bench/README.md, "Speaker normalisation": a clip alone loses 6 points on RAVDESS, 5 clips
# a speaker gain 1.5; CK+'s 2-4 sequences a subject gained 1.4 in the BLSTM).
FEW_CLIPS = 3


def typical_speaker(clips: Sequence[np.ndarray], speakers: Sequence[str]) -> dict:
    """The mean over speakers of each speaker's own mean and variance.

    Returns ``{"speaker_mean": (width,), "speaker_var": (width,)}`` (float64), the
    statistics a speaker with no clips of its own would get.
    """
    own = [_moments(group) for group in _grouped(clips, speakers).values()]
    own = [moments for moments in own if moments is not None]
    if not own:
        raise ValueError("no speaker has a clip with features")
    return {
        "speaker_mean": np.mean([mean for mean, _ in own], axis=0),
        "speaker_var": np.mean([var for _, var in own], axis=0),
    }


def statistics(
    clips: Sequence[np.ndarray], speakers: Sequence[str], typical: dict, prior: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each speaker's shrunk ``(mean, scale)`` over its clips that have rows.

    ``speakers`` has one entry per clip. A speaker whose clips have no rows is left out.
    """
    out = {}
    for speaker, group in _grouped(clips, speakers).items():
        own = _moments(group)
        if own is not None:
            out[speaker] = shrunk(*own, sum(1 for c in group if len(c)), typical, prior)
    return out


def kept_statistics(
    clips: Sequence[np.ndarray], speakers: Sequence[str], typical: dict, prior: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``statistics`` of the speakers of 2 or more clips with rows: what a model keeps.

    A speaker of one clip needs nothing kept: scored alone, it gets the same statistics.
    """
    clips_of = Counter(s for c, s in zip(clips, speakers, strict=True) if len(c))
    several = [i for i, s in enumerate(speakers) if clips_of[s] >= 2]
    return statistics([clips[i] for i in several], [speakers[i] for i in several], typical, prior)


def of_one_speaker(
    clips: Sequence[np.ndarray], typical: dict, prior: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """One speaker's shrunk ``(mean, scale)`` over ``clips``; None when none has rows.

    What a trained model adds for a speaker it never saw, from that speaker's new clips
    (``msff predict --speaker``): the statistics the workflow gives a speaker of its sheet.
    """
    return statistics(clips, ["one"] * len(clips), typical, prior).get("one")


def shrunk(
    mean: np.ndarray, var: np.ndarray, n: int, typical: dict, prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """A speaker's ``(mean, scale)`` from its own moments over ``n`` clips, shrunk.

    A feature of zero variance gets scale 1 (left unscaled, as StandardScaler does).
    """
    mean = (n * mean + prior * typical["speaker_mean"]) / (n + prior)
    var = (n * var + prior * typical["speaker_var"]) / (n + prior)
    scale = np.sqrt(var)
    scale[scale == 0] = 1.0
    return mean, scale


def standardise(
    clips: Sequence[np.ndarray],
    speakers: Sequence[str],
    typical: dict,
    prior: float,
    known: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[np.ndarray]:
    """Each clip less its speaker's shrunk mean, over the shrunk standard deviation.

    ``speakers`` has one entry per clip; the clips of a speaker standardise each other,
    unless the speaker is in ``known`` (``statistics`` of a run, kept with its model):
    then its statistics are those, and only the other speakers' are computed. float64 out.
    """
    _check_lengths(clips, speakers)
    out = [np.asarray(clip, np.float64) for clip in clips]
    known = known or {}
    rest = [i for i, speaker in enumerate(speakers) if speaker not in known]
    computed = statistics([out[i] for i in rest], [speakers[i] for i in rest], typical, prior)
    for i, speaker in enumerate(speakers):
        if len(out[i]):
            mean, scale = known[speaker] if speaker in known else computed[speaker]
            out[i] = (out[i] - mean) / scale
    return out


def warn_if_few_clips(speakers: Sequence[str], setting: str) -> None:
    """Log a warning when the median speaker has fewer than ``FEW_CLIPS`` clips.

    ``setting`` names the config key that turns the normalisation off.
    """
    counts = sorted(Counter(speakers).values())
    if counts and counts[len(counts) // 2] < FEW_CLIPS:
        log.warning(
            "%s: the median speaker has %d clip(s) with features; speaker normalisation "
            "pays from about %d (a clip alone loses accuracy): consider %s: 0",
            setting,
            counts[len(counts) // 2],
            FEW_CLIPS,
            setting,
        )


def _check_lengths(items: Sequence, speakers: Sequence[str]) -> None:
    if len(items) != len(speakers):
        raise ValueError(f"{len(items)} clips and {len(speakers)} speakers")


def _grouped(items: Sequence, speakers: Sequence[str]) -> dict:
    _check_lengths(items, speakers)
    groups: dict = {}
    for item, speaker in zip(items, speakers, strict=True):
        groups.setdefault(speaker, []).append(item)
    return groups


def _moments(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """A speaker's mean (of its clips' means) and variance (of its rows about that mean)."""
    clips = [np.asarray(c, np.float64) for c in clips if len(c)]
    if not clips:
        return None
    mean = np.mean([c.mean(axis=0) for c in clips], axis=0)
    var = np.mean([((c - mean) ** 2).mean(axis=0) for c in clips], axis=0)
    return mean, var
