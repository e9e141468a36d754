"""The openSMILE + SVM audio baseline: scores for every clip, and one clip's scores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from msff import cache, scores, speakers, svm
from msff.errors import ConfigError
from msff.logs import log


def _features(path: str | None) -> tuple[np.ndarray | None, str]:
    """The clip's openSMILE features, or None and why the model cannot hear it."""
    if path is None:
        return None, "no audio stream"
    with h5py.File(path, "r") as f:
        error = f.attrs["error"]
        if error:  # what went wrong, without the "clip <id>: " every cache error starts with
            return None, f"no usable audio: {error.split(': ', 1)[-1]}"
        if f.attrs.get("silent", False):
            return None, "silent audio track"
        return f["features"][()], ""


def svm_opensmile(
    clips: list[dict],
    opensmile_h5: dict[str, str],
    out_scores: str | Path,
    out_model: str | Path,
    out_fitted: str | Path,
    classes: list[str],
    **options,
) -> None:
    """Fit on the training clips, write class scores of every clip of every split.

    ``clips`` are sheet records (clip, class, split, speaker). A clip with no usable
    audio (no stream, decoding error, silent track) gets the uniform row and a note.
    ``options`` are :func:`fit_and_score`'s (config ``head_arguments``' ``svm``).
    """
    features = [_features(opensmile_h5.get(c["clip"])) for c in clips]
    fit_and_score(
        "opensmile_svm",
        clips,
        [x for x, _ in features],
        [note for _, note in features],
        out_scores,
        out_model,
        out_fitted,
        classes,
        **options,
    )


def fit_and_score(
    name: str,
    clips: list[dict],
    features: list[np.ndarray | None],
    notes: list[str],
    out_scores: str | Path,
    out_model: str | Path,
    out_fitted: str | Path,
    classes: list[str],
    seed: int,
    c_grid: list,
    gamma_grid: list,
    folds: int,
    class_weighted: bool = False,
    kernel: str = "rbf",
    speaker_norm: float = 0.0,
    probability: str = svm.PROBABILITY,
) -> None:
    """The SVM model ``name`` on one feature row per clip (None: the model cannot see it).

    Fits :func:`msff.svm.fit_svm` on the training clips that have features and writes the
    scores of every clip (uniform rows, with ``notes`` saying why, where there are none),
    the provenance JSON and the fitted model (HDF5, no pickle) for ``msff predict``.
    ``c_grid``, ``gamma_grid``, ``folds``, ``kernel`` and ``probability`` are fit_svm's;
    ``class_weighted`` weighs rare classes up; ``speaker_norm`` > 0 standardises each
    speaker's features over its own clips, whatever their split (:mod:`msff.speakers`).
    """
    started = time.time()
    seen = np.array([x is not None for x in features])
    train = seen & np.array([c["split"] == "train" for c in clips])
    if not train.any():
        why = sorted({n for n, c in zip(notes, clips, strict=True) if c["split"] == "train"})
        raise ConfigError(f"{name}: no training clip it can use ({'; '.join(why) or 'none'})")
    x_train = np.stack([features[i] for i in np.flatnonzero(train)])
    fitted = svm.fit_svm(
        x_train,
        [clips[i]["class"] for i in np.flatnonzero(train)],
        [clips[i]["speaker"] for i in np.flatnonzero(train)],
        classes,
        seed,
        c_grid=c_grid,
        gamma_grid=gamma_grid,
        folds=folds,
        class_weight="balanced" if class_weighted else None,
        kernel=kernel,
        speaker_prior=speaker_norm,
        probability=probability,
    )
    rows = scores.uniform(len(clips), len(classes))
    if seen.any():
        x_seen = np.stack([f for f in features if f is not None])
        seen_speakers = [clips[i]["speaker"] for i in np.flatnonzero(seen)]
        if speaker_norm:
            speakers.warn_if_few_clips(seen_speakers, "svm_speaker_norm")
            svm.remember_speakers(fitted, x_seen, seen_speakers)
        rows[seen] = svm.predict_scores(fitted, x_seen, seen_speakers)
    scores.write(
        out_scores, [c["clip"] for c in clips], [c["split"] for c in clips], rows, classes, notes
    )
    for split in ("train", "val", "test"):
        pick = [i for i, c in enumerate(clips) if c["split"] == split]
        if pick:
            truth = np.array([classes.index(clips[i]["class"]) for i in pick])
            accuracy = float((rows[pick].argmax(1) == truth).mean())
            log.info(
                "%s accuracy %.3f over %d clips (all clips, unseen ones uniform)",
                split,
                accuracy,
                len(pick),
            )
    record = {
        "name": name,
        "seconds": round(time.time() - started, 2),
        "n_seen": int(seen.sum()),
        "n_clips": len(clips),
        **fitted.provenance(),
    }
    cache.write_text(out_model, json.dumps(record, indent=2, default=str))
    # The fitted model itself, for `python -m msff predict`: arrays and JSON in HDF5, so a
    # results folder from someone else cannot run code when it is read (no pickle).
    with cache.atomic_path(out_fitted) as tmp:
        svm.save_svm(fitted, tmp)


def load(fitted_path: str | Path) -> svm.FittedSvm:
    """The fitted SVM that ``svm_opensmile`` wrote (arrays only: nothing is unpickled)."""
    return svm.load_svm(fitted_path)


def needs_enrolment(fitted: svm.FittedSvm, speaker: str) -> bool:
    """Whether the SVM is speaker-normalised and does not keep ``speaker``."""
    return fitted.speaker_prior > 0 and speaker not in svm.known_speakers(fitted.arrays)


def enrol(fitted: svm.FittedSvm, speaker: str, opensmile_h5: list[str | Path]) -> bool:
    """Keep a new ``speaker``'s statistics over these clips (:func:`msff.svm.enrol_speaker`).

    Clips that cannot be heard play no part. False when nothing was kept.
    """
    if not needs_enrolment(fitted, speaker):
        return False  # before reading the clips
    rows = [x for x in (_features(str(p))[0] for p in opensmile_h5) if x is not None]
    return bool(rows) and svm.enrol_speaker(fitted, np.stack(rows), speaker)


def infer(
    fitted: svm.FittedSvm, opensmile_h5: str | Path, speaker: str | None = None
) -> np.ndarray | None:
    """Class probabilities of one clip; None when it cannot be heard.

    With speaker normalisation, a ``speaker`` of the run (2 or more clips) or one
    enrolled (:func:`enrol`) lends the clip its statistics; otherwise the clip is a speaker
    of one clip, standardised mostly by the typical training speaker's statistics.
    """
    x, _ = _features(str(opensmile_h5))
    if x is None:
        return None
    return svm.predict_scores(fitted, x[None], None if speaker is None else [speaker])[0]
