"""Subject-grouped folds of a sheet, decided without torch (the workflow reads them at parse time).

Folds are ``StratifiedGroupKFold`` over subjects (seeded), so no subject is in two folds
and each fold has roughly every class. For fold k its clips are the test clips; of the
other subjects, one grouped share more is held out as validation clips (early stopping,
fusion weights) and the rest train.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from msff.errors import ConfigError


def assign_folds(records: list[dict], classes: list[str], k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every clip: subject-grouped, class-stratified, seeded."""
    labels = np.array([classes.index(r["class"]) for r in records])
    groups = np.array([r["speaker"] for r in records])
    if len(set(groups)) < k:
        raise ConfigError(f"{k} folds need at least {k} subjects, the sheet has {len(set(groups))}")
    fold = np.full(len(records), -1)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        for i, (_, held) in enumerate(splitter.split(labels, labels, groups)):
            fold[held] = i
    except ValueError as error:  # e.g. fewer clips of every class than folds
        raise ConfigError(f"{k} folds of {len(records)} clips: {str(error).rstrip('.')}") from None
    return fold


def fold_records(
    records: list[dict], fold: np.ndarray, k: int, classes: list[str], seed: int
) -> list[dict]:
    """The clips of fold ``k`` as test, a grouped 1/folds of the rest as val, the rest train."""
    rest = np.flatnonzero(fold != k)
    inner = assign_folds([records[i] for i in rest], classes, int(fold.max()) + 1, seed + k)
    split = np.full(len(records), "train", dtype=object)
    split[fold == k] = "test"
    split[rest[inner == 0]] = "val"
    return [dict(r, split=s) for r, s in zip(records, split, strict=True)]


def out_of_fold_records(
    records: list[dict], classes: list[str], k: int, seed: int
) -> list[list[dict]]:
    """The clips of ``k`` trainings that score every train and validation clip out of fold.

    The sheet's test clips stay out of all of them. The train and validation clips are
    split into ``k`` subject-grouped folds; training ``j`` takes fold ``j`` as its test
    clips (scored by a model that never saw their subjects) and, like :func:`fold_records`,
    a grouped share of the other subjects as validation clips for early stopping. The
    fusion searches its weights on these out-of-fold scores: every train and validation
    clip instead of the validation clips alone (the paper's 3-fold protocol).
    """
    pool = [r for r in records if r["split"] != "test"]
    try:
        fold = assign_folds(pool, classes, k, seed)
        return [fold_records(pool, fold, j, classes, seed) for j in range(k)]
    except ConfigError as error:
        raise ConfigError(
            f"fusion.out_of_fold: {k} trainings over the train and validation clips "
            f"({len(pool)} clips, {len({r['speaker'] for r in pool})} subjects), each "
            f"validating on a share of the subjects it trains on: {error}; lower "
            f"fusion.out_of_fold, or set it to 0 to search the weights on validation"
        ) from None
