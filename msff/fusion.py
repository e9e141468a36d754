"""Score fusion: S = sum_i w_i S_i with weights on the simplex, grid-searched on validation.

The grid holds every weight vector whose entries are multiples of ``step`` and sum to 1
(the paper's best weights, 0.6190 / 0.0239 / 0.0476 / 0.3095, are multiples of 1/42).
The best vector has the highest accuracy; ties go to fewer models, then to the higher
mean probability of the true class, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np


def simplex_grid(n_models: int, step: float) -> np.ndarray:
    """Every weight vector of ``n_models`` entries, multiples of ``step``, summing to 1."""
    parts = round(1 / step)
    if parts < 1 or abs(parts * step - 1) > 1e-6:
        raise ValueError(f"step={step} must divide 1 (e.g. 0.05, 0.1, 1/42)")
    # Stars and bars: choose n_models-1 bar positions among parts+n_models-1 slots.
    rows = []
    for bars in combinations(range(parts + n_models - 1), n_models - 1):
        edges = (-1, *bars, parts + n_models - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_models)])
    return np.asarray(rows, dtype=float) / parts


@dataclass(frozen=True)
class FusionResult:
    """The chosen weights and how they scored on the clips they were chosen on."""

    weights: np.ndarray
    accuracy: float
    mean_true_prob: float


def fuse(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted sum of the models' score matrices (each (n_clips, n_classes))."""
    return np.tensordot(np.asarray(weights, float), np.stack(scores), axes=1)


def search(scores: Sequence[np.ndarray], labels: np.ndarray, step: float) -> FusionResult:
    """Grid-search the simplex for the weights with the best accuracy on ``labels``."""
    stack = np.stack([np.asarray(s, float) for s in scores])  # (M, n, C)
    labels = np.asarray(labels)
    grid = simplex_grid(len(stack), step)
    fused = np.einsum("gm,mnc->gnc", grid, stack)  # (G, n, C)
    accuracy = (fused.argmax(2) == labels).mean(1)
    true_prob = fused[:, np.arange(len(labels)), labels].mean(1)
    n_used = (grid > 0).sum(1)
    # lexsort: the last key is the primary one.
    order = np.lexsort((-true_prob, n_used, -accuracy))
    best = order[0]
    return FusionResult(grid[best], float(accuracy[best]), float(true_prob[best]))


def cross_validate(
    scores: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: Sequence[str],
    folds: int,
    step: float,
    seed: int,
) -> list[dict]:
    """Search weights on k-1 folds of clips (grouped by speaker), score the held-out fold.

    Returns one record per fold: its weights and held-out accuracy, an estimate of how
    well weights chosen this way carry over to clips they were not chosen on.
    """
    from sklearn.model_selection import GroupKFold

    labels = np.asarray(labels)
    stack = [np.asarray(s, float) for s in scores]
    n_groups = len(set(groups))
    if n_groups < folds:
        raise ValueError(f"{folds} folds need at least {folds} speakers, got {n_groups}")
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for k, (fit_idx, held_idx) in enumerate(splitter.split(labels, labels, groups)):
        result = search([s[fit_idx] for s in stack], labels[fit_idx], step)
        held = fuse([s[held_idx] for s in stack], result.weights).argmax(1)
        out.append(
            dict(
                fold=k,
                weights=result.weights.tolist(),
                accuracy=float((held == labels[held_idx]).mean()),
                n_clips=int(len(held_idx)),
            )
        )
    return out
