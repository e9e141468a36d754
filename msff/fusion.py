"""Score fusion: S = sum_i w_i S_i with weights on the simplex, grid-searched on validation.

The grid holds every weight vector whose entries are multiples of ``step`` and sum to 1
(the paper's best weights, 0.6190 / 0.0239 / 0.0476 / 0.3095, are multiples of 1/42).
It is generated and scored a chunk of weight vectors at a time, so memory stays bounded
whatever the number of models (9 models at step 0.05 are 3.1 million vectors).

How the winner is picked (``rule``):

``"best"``
    The highest accuracy; ties go to fewer models, then to the higher mean probability
    of the true class, then to the earlier grid row, so the choice is deterministic.
``"one-se"``
    The one-standard-error rule (Breiman et al. 1984; Hastie et al., Elements of
    Statistical Learning, 7.10): every vector whose correct clips are within one binomial
    standard error of the best count, ``sqrt(n a (1 - a))`` and at least one clip, counts
    as a tie, and the tie goes to the fewest models, then the highest accuracy, then the
    higher mean true-class probability. On a handful of validation clips one clip decides
    the grid's winner; this keeps a model that only wins a clip by chance out.
``"auto"`` (default)
    ``"one-se"`` when there are fewer than ``min_clips`` validation clips (default
    ``SMALL_VALIDATION`` = 20, where one clip is 5 % or more of the accuracy), ``"best"``
    otherwise. Measured on real RAVDESS SVM scores plus a model at chance
    (bench/fusion_small_val.py, bench/README.md): on 7 and 14 validation clips "one-se"
    was as good or better than "best" whether or not the models complement each other;
    from 28 clips on it lost up to 1.7 points when they do. Large validation sets
    (AFEW's 383 clips) keep the paper's behaviour.
``"equal"``
    No search: every model weighs 1/n. Where the validation clips are a few speakers,
    searched weights follow those speakers: on unseen CK+ subjects and RAVDESS speakers
    equal weights did as well or better (bench/README.md). Below ``min_clips``
    validation clips it is ``"one-se"``: so few clips cannot tell a model at chance (one
    trained on a single actor, say) from a good one, and equal weights would fuse it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, islice

import numpy as np

from msff.errors import ConfigError

RULES = ("best", "one-se", "auto", "equal")
SMALL_VALIDATION = 20
# Fused scores of a chunk of weight vectors hold at most this many floats (16 MB).
CHUNK_ELEMENTS = 2**21


def _parts(step: float) -> int:
    parts = round(1 / step)
    if parts < 1 or abs(parts * step - 1) > 1e-6:
        raise ValueError(f"step={step} must divide 1 (e.g. 0.05, 0.1, 1/42)")
    return parts


def grid_chunks(n_models: int, step: float, rows: int) -> Iterator[np.ndarray]:
    """The rows of :func:`simplex_grid`, in the same order, ``rows`` at a time."""
    parts = _parts(step)
    if rows < 1:
        raise ValueError(f"rows={rows} must be at least 1")
    # Stars and bars: choose n_models-1 bar positions among parts+n_models-1 slots.
    slots = parts + n_models - 1
    bars_iter = combinations(range(slots), n_models - 1)
    while True:
        bars = list(islice(bars_iter, rows))
        if not bars:
            return
        bars = np.array(bars, dtype=np.int64).reshape(len(bars), n_models - 1)
        edges = np.hstack([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), slots)])
        yield (np.diff(edges, axis=1) - 1) / parts


def simplex_grid(n_models: int, step: float) -> np.ndarray:
    """Every weight vector of ``n_models`` entries, multiples of ``step``, summing to 1."""
    return np.concatenate(list(grid_chunks(n_models, step, 2**16)))


@dataclass(frozen=True)
class FusionResult:
    """The chosen weights and how they scored on the clips they were chosen on.

    ``rule`` is the rule applied (``"best"``, ``"one-se"`` or ``"equal"``), ``tolerance``
    the clips counted as a tie (0 for ``"best"``), ``best_accuracy`` the highest accuracy
    on the grid (the chosen weights' ``accuracy`` is lower by at most ``tolerance``
    clips; for ``"equal"``, which searches no grid, the equal weights' accuracy).
    """

    weights: np.ndarray
    accuracy: float
    mean_true_prob: float
    rule: str = "best"
    tolerance: float = 0.0
    best_accuracy: float = float("nan")
    n_clips: int = 0


def fuse(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted sum of the models' score matrices (each (n_clips, n_classes)).

    Summed model by model as :func:`search` sums them: the same floats, so the same argmax
    where two classes tie.
    """
    fused = np.zeros(np.shape(scores[0]))
    for weight, matrix in zip(weights, scores, strict=True):
        fused += float(weight) * np.asarray(matrix, float)
    return fused


# The note of a clip that only models the weights left out could see (:func:`fuse_seen`).
EQUAL_NOTE = "no model of nonzero weight could score it; fused equally: "


def fuse_seen(
    scores: Sequence[np.ndarray], weights: Sequence[float], seen: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """:func:`fuse`, for each clip over the models that could see it.

    ``seen`` ``(n_models, n_clips)``: which model scored which clip (a model that could
    not see a clip, no face or no voice, holds the uniform row there). Where a model of
    nonzero weight saw the clip, the weighted sum (the uniform rows of the others change no
    argmax). Where only models the weights left out saw it (an audio-only clip when the
    weights chose face models), their mean: a label from what could see it, not the argmax
    of uniform rows. Where no model saw it, the uniform row. Also returns per clip how it
    was fused: ``weights``, ``equal`` or ``none``.
    """
    seen = np.asarray(seen, bool)
    weights = np.asarray(weights, float)
    fused = fuse(scores, weights)
    how = []
    for i in range(fused.shape[0]):
        if seen[weights > 0, i].any():
            how.append("weights")
        elif seen[:, i].any():
            share = seen[:, i] / seen[:, i].sum()
            fused[i] = fuse([matrix[i : i + 1] for matrix in scores], share)[0]
            how.append("equal")
        else:
            how.append("none")
    return fused, how


def search(
    scores: Sequence[np.ndarray],
    labels: np.ndarray,
    step: float,
    rule: str = "auto",
    min_clips: int = SMALL_VALIDATION,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> FusionResult:
    """Grid-search the simplex for the weights with the best accuracy on ``labels``.

    Parameters
    ----------
    scores : sequence of ndarray, each (n_clips, n_classes)
        One score matrix per model, rows in the order of ``labels``.
    labels : ndarray of int
        True class index of each clip.
    step : float
        Grid step; must divide 1 (checked whatever the rule).
    rule : {"auto", "best", "one-se", "equal"}
        How the winner is picked (module docstring); ``"best"`` is the search as it was.
    min_clips : int
        Below this many clips ``"auto"`` and ``"equal"`` apply ``"one-se"``; from it on,
        ``"best"`` and equal weights.
    chunk_elements : int
        Fused scores held at once (weight vectors x clips x classes); the result does not
        depend on it.

    Returns
    -------
    FusionResult
    """
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} must be one of {RULES}")
    _parts(step)
    stack = np.stack([np.asarray(s, float) for s in scores])  # (M, n, C)
    labels = np.asarray(labels)
    n_models, n_clips, n_classes = stack.shape
    if rule == "auto":
        rule = "one-se" if n_clips < min_clips else "best"
    if rule == "equal" and n_clips < min_clips:
        rule = "one-se"
    model_true_prob = stack[:, np.arange(n_clips), labels].mean(1)
    if rule == "equal":
        weights = np.full(n_models, 1 / n_models)
        accuracy = float((fuse(list(stack), weights).argmax(1) == labels).mean())
        true_prob = float(model_true_prob @ weights)
        return FusionResult(weights, accuracy, true_prob, "equal", 0.0, accuracy, n_clips)
    rows = max(1, chunk_elements // max(1, n_clips * n_classes))
    # Per number of models used: the best (correct, true prob, -row) and its weights.
    level: dict[int, tuple] = {}
    offset = 0
    for grid in grid_chunks(n_models, step, rows):
        # Accumulated model by model: the same floats whatever the chunk size.
        fused = np.zeros((len(grid), n_clips, n_classes))
        true_prob = np.zeros(len(grid))  # mean true-class probability: linear in the weights
        for m in range(n_models):
            fused += grid[:, m, None, None] * stack[m]
            true_prob += grid[:, m] * model_true_prob[m]
        correct = (fused.argmax(2) == labels).sum(1)
        n_used = (grid > 0).sum(1)
        for k in np.unique(n_used):
            pick = np.flatnonzero(n_used == k)
            # lexsort: the last key is the primary one; the earliest row wins ties.
            best = pick[np.lexsort((pick, -true_prob[pick], -correct[pick]))[0]]
            key = (int(correct[best]), float(true_prob[best]), -(offset + int(best)))
            if int(k) not in level or key > level[int(k)][0]:
                level[int(k)] = (key, grid[best].copy())
        offset += len(grid)
    top = max(key[0] for key, _ in level.values())
    if rule == "best":
        tolerance = 0.0
        k = min(k for k, (key, _) in level.items() if key[0] == top)
    else:
        a = top / n_clips
        tolerance = max(1.0, float(np.sqrt(n_clips * a * (1 - a))))
        k = min(k for k, (key, _) in level.items() if key[0] >= top - tolerance - 1e-9)
    (correct_k, true_prob_k, _), weights = level[k]
    return FusionResult(
        weights,
        correct_k / n_clips,
        true_prob_k,
        rule=rule,
        tolerance=tolerance,
        best_accuracy=top / n_clips,
        n_clips=n_clips,
    )


def cross_validate(
    scores: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: Sequence[str],
    folds: int,
    step: float,
    seed: int,
    rule: str = "auto",
    min_clips: int = SMALL_VALIDATION,
) -> list[dict]:
    """Search weights on k-1 folds of clips (grouped by speaker), score the held-out fold.

    Returns one record per fold: its weights, held-out accuracy and held-out speakers, an
    estimate of how well weights chosen this way carry over to clips they were not chosen
    on. ``rule`` and ``min_clips`` are passed to :func:`search`.
    """
    from sklearn.model_selection import GroupKFold

    labels = np.asarray(labels)
    stack = [np.asarray(s, float) for s in scores]
    n_groups = len(set(groups))
    if n_groups < folds:
        raise ConfigError(f"{folds} folds need at least {folds} speakers, got {n_groups}")
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for k, (fit_idx, held_idx) in enumerate(splitter.split(labels, labels, groups)):
        result = search([s[fit_idx] for s in stack], labels[fit_idx], step, rule, min_clips)
        held = fuse([s[held_idx] for s in stack], result.weights).argmax(1)
        out.append(
            dict(
                fold=k,
                weights=result.weights.tolist(),
                accuracy=float((held == labels[held_idx]).mean()),
                n_clips=int(len(held_idx)),
                held_out=sorted({str(groups[i]) for i in held_idx}),
            )
        )
    return out
