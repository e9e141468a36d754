"""The hand-crafted audio baseline: openSMILE IS09 functionals -> standardise -> RBF SVM.

C and gamma are chosen by speaker-grouped cross-validation on the training clips only,
then the SVM is refitted on all of them and its decision values are turned into class
probabilities by Platt scaling fitted on out-of-fold decision values of the same
speaker-grouped folds, so no speaker is both fitted and calibrated on. This is what
``SVC(probability=True)`` did (deprecated in scikit-learn 1.9); the deprecation notice
recommends ``CalibratedClassifierCV(SVC(), ensemble=False)``, used here with grouped folds.

Scores come back with one column per class in the order of config ``labels.classes``,
whether or not the class had training clips, so fusion can add them to the other
models' scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from msff.errors import BadClipError, ConfigError

C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
GAMMA_GRID = ("scale",)
FOLDS = 4
# Platt scaling: one sigmoid per class on the one-vs-rest decision values, as libsvm's
# probability=True did; isotonic needs far more clips than a speaker fold holds.
CALIBRATION = "sigmoid"

Gamma = float | str


@dataclass
class FittedSvm:
    """A fitted, calibrated SVM and how it was chosen.

    Attributes
    ----------
    model : CalibratedClassifierCV
        Standardiser + RBF SVC, refitted on every training clip, with its calibrators.
    classes : list of str
        Column order of :func:`predict_scores` (config ``labels.classes``).
    C, gamma : float, float or str
        The chosen SVC parameters.
    cv_accuracy : float
        Accuracy of the SVC's own predictions with the chosen parameters, pooled over
        the held-out speakers of the grouped folds.
    folds : int
        Number of speaker-grouped folds used for the grid search and the calibration.
    calibration : str
        ``"grouped-cv"``: one SVC on all clips, Platt scaling on out-of-fold decision
        values. ``"ensemble"``: a fold's training speakers lacked a class, so each fold
        has its own SVC calibrated on its held-out speakers, and their probabilities
        are averaged.
    grid : dict
        Pooled cross-validated accuracy of every ``(C, gamma)`` tried.
    n_train, n_speakers : int
        Training clips and training speakers.
    seed : int
        Seed of the speaker folds.
    """

    model: CalibratedClassifierCV
    classes: list[str]
    C: float
    gamma: Gamma
    cv_accuracy: float
    folds: int
    calibration: str
    grid: dict[tuple[float, Gamma], float] = field(repr=False)
    n_train: int
    n_speakers: int
    seed: int

    def provenance(self) -> dict:
        """Plain values that describe the fit, for a report or a provenance file."""
        return {
            "model": "StandardScaler + SVC(rbf)",
            "C": self.C,
            "gamma": self.gamma,
            "cv_accuracy": self.cv_accuracy,
            "folds": self.folds,
            "calibration": f"{self.calibration} ({CALIBRATION})",
            "grid": {f"C={c} gamma={g}": acc for (c, g), acc in self.grid.items()},
            "n_train": self.n_train,
            "n_speakers": self.n_speakers,
            "seed": self.seed,
        }


def svm_pipeline(C: float, gamma: Gamma, class_weight: str | None = None) -> Pipeline:
    """Standardise each feature, then an RBF SVC (openSMILE functionals span many scales)."""
    return make_pipeline(
        StandardScaler(), SVC(kernel="rbf", C=C, gamma=gamma, class_weight=class_weight)
    )


def speaker_folds(
    labels: Sequence[str], speakers: Sequence[str], folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (train, test) index pairs with no speaker on both sides.

    Folds are balanced by class as far as whole speakers allow (StratifiedGroupKFold);
    there are ``min(folds, number of speakers)`` of them.
    """
    n_speakers = len(set(speakers))
    if n_speakers < 2:
        raise ConfigError(
            f"{n_speakers} training speaker(s): choosing C and gamma and calibrating "
            "without a speaker on both sides needs at least 2"
        )
    splitter = StratifiedGroupKFold(
        n_splits=min(folds, n_speakers), shuffle=True, random_state=seed
    )
    y, groups = np.asarray(labels), np.asarray(speakers)
    return [(train, test) for train, test in splitter.split(np.zeros(len(y)), y, groups)]


def fit_svm(
    features: np.ndarray,
    labels: Sequence[str],
    speakers: Sequence[str],
    classes: Sequence[str],
    seed: int,
    c_grid: Sequence[float] = C_GRID,
    gamma_grid: Sequence[Gamma] = GAMMA_GRID,
    folds: int = FOLDS,
    class_weight: str | None = None,
) -> FittedSvm:
    """Choose C and gamma by speaker-grouped CV, refit on all clips, calibrate.

    Parameters
    ----------
    features : ndarray, shape (n, d)
        One row of openSMILE functionals per training clip.
    labels : sequence of str
        Class of each clip; every one must be in ``classes``.
    speakers : sequence of str
        Speaker of each clip; folds never split a speaker.
    classes : sequence of str
        All classes, in the column order scores will have. A class without training
        clips is allowed; it will score 0.
    seed : int
        Seed of the speaker folds; the fit is otherwise deterministic.
    c_grid, gamma_grid : sequence
        Values tried; on a tie the earlier ``(C, gamma)`` in grid order wins.
        gamma is a positive float, ``"scale"`` or ``"auto"``.
    folds : int
        Speaker-grouped folds (at most the number of speakers).
    class_weight : {None, "balanced"}
        Passed to SVC; ``"balanced"`` weighs rare classes up.

    Returns
    -------
    FittedSvm
        The calibrated model and the chosen C, gamma and their CV accuracy.

    Raises
    ------
    ConfigError
        For mismatched lengths, a label outside ``classes``, an empty or invalid grid,
        fewer than 2 speakers or 2 classes, or folds whose training part never holds
        2 classes.
    """
    x = _check_features(features)
    y = np.asarray(labels, dtype=object)
    groups = np.asarray(speakers, dtype=object)
    classes = list(classes)
    if not (len(x) == len(y) == len(groups)):
        raise ConfigError(
            f"{len(x)} feature rows, {len(y)} labels and {len(groups)} speakers: "
            "need one of each per clip"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes {classes} has duplicates")
    unknown = sorted(set(y) - set(classes))
    if unknown:
        raise ConfigError(f"labels {unknown} are not classes {classes}")
    present = sorted(set(y))
    if len(present) < 2:
        raise ConfigError(f"training clips hold {len(present)} class(es) {present}; need 2")
    grid = _check_grid(c_grid, gamma_grid)
    if folds < 2:
        raise ConfigError(f"folds={folds} must be at least 2")

    splits = speaker_folds(y, groups, folds, seed)
    # A fold whose training speakers hold one class cannot fit an SVC: leave it out.
    usable = [(tr, te) for tr, te in splits if len(set(y[tr])) >= 2]
    if not usable:
        raise ConfigError(
            f"no speaker fold of {len(splits)} has 2 classes among its training speakers"
        )

    scores = {params: _pooled_accuracy(x, y, usable, *params, class_weight) for params in grid}
    (C, gamma), cv_accuracy = max(scores.items(), key=lambda kv: kv[1])  # first of the ties

    # ensemble=False needs every class in every fold's training part (the out-of-fold
    # decision values need one column per class); otherwise calibrate fold by fold.
    complete = all(set(y[tr]) == set(present) for tr, _ in usable) and len(usable) == len(splits)
    model = CalibratedClassifierCV(
        svm_pipeline(C, gamma, class_weight),
        method=CALIBRATION,
        cv=usable,
        ensemble=not complete,
    )
    model.fit(x, y)
    return FittedSvm(
        model=model,
        classes=classes,
        C=C,
        gamma=gamma,
        cv_accuracy=cv_accuracy,
        folds=len(splits),
        calibration="grouped-cv" if complete else "ensemble",
        grid=scores,
        n_train=len(y),
        n_speakers=len(set(groups)),
        seed=seed,
    )


def predict_scores(fitted: FittedSvm, features: np.ndarray) -> np.ndarray:
    """Class probabilities, shape (n, len(classes)), columns in ``fitted.classes`` order.

    Rows sum to 1; a class without training clips gets 0.

    Raises
    ------
    ConfigError
        When the features do not have the width the model was trained on.
    BadClipError
        When a row holds NaN or infinity, naming the rows.
    """
    x = _check_features(features)
    expected = fitted.model.n_features_in_
    if x.shape[1] != expected:
        raise ConfigError(f"features have {x.shape[1]} columns; the SVM was trained on {expected}")
    probabilities = fitted.model.predict_proba(x)
    scores = np.zeros((len(x), len(fitted.classes)))
    columns = [fitted.classes.index(c) for c in fitted.model.classes_]
    scores[:, columns] = probabilities
    # Calibrators are renormalised already; this removes float drift only.
    return scores / scores.sum(axis=1, keepdims=True)


def _check_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"features of shape {x.shape}: need (clips, features)")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise BadClipError(f"feature rows {bad[:10].tolist()} hold NaN or infinity")
    return x


def _check_grid(c_grid: Sequence[float], gamma_grid: Sequence[Gamma]) -> list:
    if not len(c_grid) or not len(gamma_grid):
        raise ConfigError(f"empty grid: C {list(c_grid)}, gamma {list(gamma_grid)}")
    for c in c_grid:
        if isinstance(c, str) or not c > 0:
            raise ConfigError(f"C={c!r} must be a positive number")
    for g in gamma_grid:
        if isinstance(g, str) and g not in ("scale", "auto"):
            raise ConfigError(f"gamma={g!r} must be 'scale', 'auto' or a positive number")
        if not isinstance(g, str) and not g > 0:
            raise ConfigError(f"gamma={g!r} must be 'scale', 'auto' or a positive number")
    return [(float(c), g if isinstance(g, str) else float(g)) for c in c_grid for g in gamma_grid]


def _pooled_accuracy(x, y, splits, C: float, gamma: Gamma, class_weight) -> float:
    """Share of held-out clips the SVC classifies right, over all folds together."""
    correct = total = 0
    for train, test in splits:
        model = svm_pipeline(C, gamma, class_weight).fit(x[train], y[train])
        correct += int((model.predict(x[test]) == y[test]).sum())
        total += len(test)
    return correct / total
