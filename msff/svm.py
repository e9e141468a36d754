"""The hand-crafted audio baseline: openSMILE functionals -> standardise -> SVM.

The kernel is RBF (the paper's IS09 baseline) or linear (the ComParE challenges' baseline
for their 6,373 functionals). C and gamma (RBF only) are chosen by speaker-grouped
cross-validation on the training clips only, then the SVM is refitted on all of them.
Its class scores are probabilities whose argmax is the SVM's own decision:

``softmax`` (default)
    ``softmax(beta * d)`` of the SVC's one-vs-rest decision values ``d`` (OvO votes plus a
    confidence in (-1/3, 1/3) that breaks vote ties, scikit-learn's ``ovr`` shape), with
    the inverse temperature ``beta`` fitted by log loss on out-of-fold decision values of
    the same speaker-grouped folds, so no speaker is both fitted and calibrated on. The
    SVC is built with ``break_ties=True``, so its ``predict`` is the argmax of ``d`` and
    therefore of the probabilities.
``sigmoid``
    What this module did before: Platt scaling, one sigmoid per class on the out-of-fold
    decision values, renormalised (``CalibratedClassifierCV(method="sigmoid",
    ensemble=False)``). On RAVDESS its argmax disagreed with the SVC on about one clip in
    eight and lost 3-5 accuracy points on unseen speakers (bench/README.md).
``coupling``
    libsvm's multi-class probabilities (``svm-train -b 1``; Wu, Lin & Weng, JMLR 2004):
    one Platt sigmoid per pair of classes on that pair's out-of-fold decision values,
    the pairwise probabilities then coupled into one distribution (their method 2, a
    linear system). Its argmax can differ from the vote: where votes are close it
    weighs how sure each pair is. On HOG descriptors of CK+ faces it was 5-10 points
    above the vote; on RAVDESS's openSMILE sets within a point (bench/README.md).
``auto``
    Whichever of the three has the highest out-of-fold accuracy, then the lowest log
    loss, each measured cross-fitted: a fold's clips are mapped by parameters fitted on
    the other folds' out-of-fold values.

Where the out-of-fold clips a mapping could be fitted on are all of one class (one
training speaker with a clip or two of each class: each held-out clip was its class's
only one), no mapping is fitted: fitted there it only grows certain (bench/README.md,
MEAD). The scores are then the untempered softmax (``beta = 1``), as when there are too
few clips for any fold.

**Speaker normalisation** (``speaker_prior > 0``; the cpu preset's ``svm_speaker_norm``):
before the scaler, each speaker's functionals are standardised over that speaker's own
clips, shrunk toward the typical training speaker (:mod:`msff.speakers`). The typical
speaker's statistics are stored with the model; a clip scored alone (``speakers`` not
given) is a speaker of one clip.

Both methods' out-of-fold accuracy and log loss are recorded in ``FittedSvm.calibration_cv``
and the provenance. Prediction needs only arrays (scaler, support vectors, dual
coefficients, intercepts, gamma, the probability parameters): :func:`save_svm` writes
them to HDF5 and :func:`load_svm` reads them back without unpickling anything.

Scores come back with one column per class in the order of config ``labels.classes``,
whether or not the class had training clips, so fusion can add them to the other
models' scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy.special import expit
from sklearn.calibration import _sigmoid_calibration
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from msff import speakers as speaker_norm
from msff.errors import BadClipError, ConfigError
from msff.logs import log

C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
GAMMA_GRID = ("scale",)
KERNELS = ("rbf", "linear")
FOLDS = 4
# softmax keeps the SVC's decision as the argmax; see the module docstring and bench/README.md.
PROBABILITY = "softmax"
PROBABILITY_METHODS = ("softmax", "sigmoid", "coupling", "auto")
# A pairwise probability is kept in [PAIR_MIN, 1 - PAIR_MIN], as libsvm does.
PAIR_MIN = 1e-7
# The inverse temperature is searched in [0, BETA_MAX]; one vote is worth at most e^50.
BETA_MAX = 50.0
# The mapping where none can be fitted: the softmax of the decision values as they are.
UNTEMPERED = {"beta": np.float64(1.0)}
FORMAT = "msff-svm/1"

Gamma = float | str
# The arrays each probability method stores.
MAPPING = {
    "softmax": ("beta",),
    "sigmoid": ("platt_a", "platt_b"),
    "coupling": ("pair_a", "pair_b"),
}


@dataclass
class FittedSvm:
    """A fitted SVM, its probability mapping, and how both were chosen.

    Attributes
    ----------
    model : Pipeline or None
        StandardScaler + SVC (``break_ties=True``) refitted on every training clip;
        ``model.predict`` is the SVC's decision. None for a model read by :func:`load_svm`
        (prediction uses ``arrays`` only).
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
        The probability method used: ``"softmax"``, ``"sigmoid"`` or ``"coupling"``.
    grid : dict
        Pooled cross-validated accuracy of every ``(C, gamma)`` tried.
    n_train, n_speakers : int
        Training clips and training speakers.
    seed : int
        Seed of the speaker folds.
    arrays : dict of str to ndarray
        Everything :func:`predict_scores` needs: ``mean``, ``scale``, ``support_vectors``,
        ``dual_coef``, ``intercept``, ``n_support``, ``gamma``, ``svm_classes`` and the
        mapping's ``beta`` (softmax), ``platt_a``/``platt_b`` (sigmoid, one per class) or
        ``pair_a``/``pair_b`` (coupling, one per pair of classes).
    calibration_cv : dict
        ``softmax``, ``sigmoid`` and ``coupling``: each method's cross-fitted out-of-fold
        ``accuracy`` and ``log_loss``; ``requested``: the ``probability`` asked for.
    kernel : str
        ``"rbf"`` or ``"linear"`` (gamma then plays no part).
    speaker_prior : float
        Pseudo-clips of the typical speaker in each speaker's statistics; 0: no speaker
        normalisation. Above 0, ``arrays`` also hold the typical speaker's ``speaker_mean``
        and ``speaker_var``, and after :func:`remember_speakers` ``known_speakers``,
        ``known_mean`` and ``known_scale``.
    """

    model: Pipeline | None
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
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    calibration_cv: dict = field(default_factory=dict)
    kernel: str = "rbf"
    speaker_prior: float = 0.0

    def provenance(self) -> dict:
        """Plain values that describe the fit, for a report or a provenance file."""
        mapping = {
            name: np.asarray(self.arrays[name]).tolist() for name in MAPPING[self.calibration]
        }
        return {
            "model": f"StandardScaler + SVC({self.kernel}, break_ties=True)",
            "speaker_prior": self.speaker_prior,
            "C": self.C,
            "gamma": self.gamma,
            "cv_accuracy": self.cv_accuracy,
            "folds": self.folds,
            "calibration": self.calibration,
            "calibration_parameters": mapping,
            "calibration_cv": self.calibration_cv,
            "grid": {f"C={c} gamma={g}": acc for (c, g), acc in self.grid.items()},
            "n_train": self.n_train,
            "n_speakers": self.n_speakers,
            "seed": self.seed,
        }


def svm_pipeline(
    C: float,
    gamma: Gamma,
    class_weight: str | None = None,
    break_ties: bool = False,
    kernel: str = "rbf",
) -> Pipeline:
    """Standardise each feature, then an SVC (openSMILE functionals span many scales).

    ``break_ties=True`` makes ``predict`` the argmax of the one-vs-rest decision values
    (vote ties go to the more confident class, not the first one); :func:`fit_svm` uses it.
    """
    return make_pipeline(
        StandardScaler(),
        SVC(kernel=kernel, C=C, gamma=gamma, class_weight=class_weight, break_ties=break_ties),
    )


def speaker_folds(
    labels: Sequence[str], speakers: Sequence[str], folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (train, test) index pairs with no speaker on both sides.

    Folds are balanced by class as far as whole speakers allow (StratifiedGroupKFold);
    there are ``min(folds, number of speakers, clips of the largest class)`` of them (a
    handful of training clips gets fewer folds, not an error). With a single training
    speaker no fold can leave a speaker out: the folds are of that speaker's clips
    (StratifiedKFold), so C, gamma and the probabilities are chosen for the speaker's
    other clips, not for unseen speakers; a warning says so. No folds at all when no class
    has 2 clips (nothing can be held out and still trained on).
    """
    y, groups = np.asarray(labels), np.asarray(speakers)
    counts = np.unique(y, return_counts=True)[1]
    largest = int(counts.max()) if len(counts) else 0
    if largest < 2:
        return []
    n_speakers = len(set(groups.tolist()))
    if n_speakers < 2:
        log.warning(
            "one training speaker (%s): the SVM's C and gamma are chosen by folds of its "
            "%d clips, not by speakers left out",
            groups[0],
            len(y),
        )
        splitter = StratifiedKFold(n_splits=min(folds, largest), shuffle=True, random_state=seed)
        return [(train, test) for train, test in splitter.split(np.zeros(len(y)), y)]
    # StratifiedGroupKFold refuses more folds than the largest class has clips.
    n_splits = min(folds, n_speakers, largest)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
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
    probability: str = PROBABILITY,
    kernel: str = "rbf",
    speaker_prior: float = 0.0,
) -> FittedSvm:
    """Choose C and gamma by speaker-grouped CV, refit on all clips, calibrate.

    Parameters
    ----------
    features : ndarray, shape (n, d)
        One row of openSMILE functionals per training clip.
    labels : sequence of str
        Class of each clip; every one must be in ``classes``.
    speakers : sequence of str
        Speaker of each clip; folds never split a speaker (with one speaker, they split
        its clips: :func:`speaker_folds`).
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
    probability : {"softmax", "sigmoid", "auto"}
        How decision values become probabilities (module docstring). Both are fitted on
        the out-of-fold decision values of the speaker folds.
    kernel : {"rbf", "linear"}
        The SVC's kernel; a linear one ignores gamma (keep ``gamma_grid`` to one value).
    speaker_prior : float
        > 0: speaker normalisation (module docstring) with this many pseudo-clips of the
        typical training speaker; every clip of a training speaker must be among
        ``features`` (a speaker is in one split only). 0: none, the paper's.

    Returns
    -------
    FittedSvm
        The fitted model, its probability mapping, the chosen C, gamma and their CV
        accuracy, and the out-of-fold accuracy and log loss of the mapping(s).

    Raises
    ------
    ConfigError
        For mismatched lengths, a label outside ``classes``, an empty or invalid grid,
        fewer than 2 classes, an unknown ``probability`` or ``kernel``, or a negative
        ``speaker_prior``. Too few clips to cross-validate (one per class, or no fold with
        2 classes) is not an error: the grid's first C and gamma are taken, with a warning.
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
    if probability not in PROBABILITY_METHODS:
        raise ConfigError(f"probability={probability!r} must be one of {PROBABILITY_METHODS}")
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r} must be one of {KERNELS}")
    if not speaker_prior >= 0:
        raise ConfigError(f"speaker_prior={speaker_prior!r} must be 0 (off) or positive")
    typical = {}
    if speaker_prior > 0:
        typical = speaker_norm.typical_speaker(x[:, None, :], groups)
        x = _by_speaker(x, groups, typical, speaker_prior)

    splits = speaker_folds(y, groups, folds, seed)
    # A fold whose training speakers hold one class cannot fit an SVC: leave it out.
    usable = [(tr, te) for tr, te in splits if len(set(y[tr])) >= 2]
    svm_classes = sorted(present)  # the order of SVC.classes_
    if not usable:
        # A handful of clips (one per class, or classes each of one speaker): nothing to
        # cross-validate on. The grid's first C and gamma, the softmax of the decision
        # values at inverse temperature 1: a model that still scores, said in the log.
        (C, gamma) = grid[0]
        log.warning(
            "%d training clips: no fold to choose C and gamma on (%s); the SVM takes C=%s, "
            "gamma=%s and the softmax of its decision values",
            len(y),
            "every class has a single clip" if not splits else "no fold has 2 classes",
            C,
            gamma,
        )
        model = svm_pipeline(C, gamma, class_weight, break_ties=True, kernel=kernel).fit(x, y)
        arrays = {**_svm_arrays(model), **UNTEMPERED, **typical}
        return FittedSvm(
            model=model,
            classes=classes,
            C=C,
            gamma=gamma,
            cv_accuracy=float("nan"),
            folds=0,
            calibration="softmax",
            grid={},
            n_train=len(y),
            n_speakers=len(set(groups)),
            seed=seed,
            arrays=arrays,
            calibration_cv={"requested": probability},
            kernel=kernel,
            speaker_prior=float(speaker_prior),
        )

    folded = {p: _out_of_fold(x, y, usable, *p, class_weight, svm_classes, kernel) for p in grid}
    scores = {params: accuracy for params, (accuracy, _) in folded.items()}
    (C, gamma), cv_accuracy = max(scores.items(), key=lambda kv: kv[1])  # first of the ties

    model = svm_pipeline(C, gamma, class_weight, break_ties=True, kernel=kernel).fit(x, y)
    held = np.concatenate([test for _, test in usable])
    pairs = folded[(C, gamma)][1]
    target = np.array([svm_classes.index(c) for c in y[held]])
    fold_of = np.concatenate([np.full(len(test), k) for k, (_, test) in enumerate(usable)])

    # Every mapping is measured (cheap: fits on a few columns of numbers); the requested
    # one, or for "auto" the best one, is used.
    methods = PROBABILITY_METHODS[:-1]
    compared = {m: _cross_fitted(m, pairs, target, fold_of) for m in methods}
    methods = methods if probability == "auto" else (probability,)
    chosen = min(methods, key=lambda m: (-compared[m]["accuracy"], compared[m]["log_loss"]))
    # A held-out clip whose class its fold's training lacked has no score of its class.
    # With one training speaker and a clip or two per class, the clips left are of one
    # class: all right, a mapping fitted on them grows certain without bound (one-hot
    # scores that outvote every other model in a fusion), and it measures nothing of the
    # other classes. Then the untempered softmax, as with no folds at all.
    scored = _scored(_ovr_of(pairs), target)
    if len(np.unique(target[scored])) >= 2:
        mapping = _fit_mapping(chosen, pairs, target)
    else:
        log.warning(
            "the SVM's held-out clips that its folds can score are all of one class (%s): "
            "no probability mapping can be fitted; the softmax of its decision values",
            ", ".join(sorted({svm_classes[t] for t in target[scored]})) or "none",
        )
        chosen, mapping = "softmax", UNTEMPERED
    arrays = _svm_arrays(model)
    arrays.update(mapping)
    arrays.update(typical)
    return FittedSvm(
        model=model,
        classes=classes,
        C=C,
        gamma=gamma,
        cv_accuracy=cv_accuracy,
        folds=len(splits),
        calibration=chosen,
        grid=scores,
        n_train=len(y),
        n_speakers=len(set(groups)),
        seed=seed,
        arrays=arrays,
        calibration_cv={"requested": probability, **compared},
        kernel=kernel,
        speaker_prior=float(speaker_prior),
    )


def _by_speaker(
    features: np.ndarray, speakers: Sequence, typical: dict, prior: float, known=None
) -> np.ndarray:
    """Rows standardised by their speaker's shrunk statistics (:mod:`msff.speakers`)."""
    rows = features[:, None, :]
    return np.concatenate(speaker_norm.standardise(rows, speakers, typical, prior, known))


def remember_speakers(fitted: FittedSvm, features: np.ndarray, speakers: Sequence[str]) -> None:
    """Keep the statistics of the run's speakers of 2 or more clips with the model.

    :func:`predict_scores` then uses them for rows of those speakers, so a clip scored
    alone as one of them (``msff predict --speaker``) gets what the workflow gave its
    clips. A speaker of one clip needs nothing kept: alone, it gets the same.
    """
    x = _check_features(features)
    stats = speaker_norm.kept_statistics(
        x[:, None, :], list(speakers), fitted.arrays, fitted.speaker_prior
    )
    ids = sorted(stats)
    fitted.arrays["known_speakers"] = np.array(ids, dtype=str)
    width = x.shape[1]
    fitted.arrays["known_mean"] = np.array([stats[s][0] for s in ids]).reshape(-1, width)
    fitted.arrays["known_scale"] = np.array([stats[s][1] for s in ids]).reshape(-1, width)


def enrol_speaker(fitted: FittedSvm, features: np.ndarray, speaker: str) -> bool:
    """Keep the statistics of a speaker the run never saw, over its clips' ``features``.

    :func:`predict_scores` then standardises that speaker's rows by them, as the workflow
    standardises a speaker of its sheet over all its clips. False (nothing kept) when the
    model is not speaker-normalised, already keeps ``speaker``, or gets no rows.
    """
    x = _check_features(features)
    if fitted.speaker_prior <= 0 or speaker in known_speakers(fitted.arrays) or not len(x):
        return False
    mean, scale = speaker_norm.of_one_speaker(x[:, None, :], fitted.arrays, fitted.speaker_prior)
    arrays, width = fitted.arrays, x.shape[1]
    arrays["known_speakers"] = np.append(arrays.get("known_speakers", np.array([], str)), speaker)
    for key, value in (("known_mean", mean), ("known_scale", scale)):
        arrays[key] = np.vstack([arrays.get(key, np.zeros((0, width))), value[None]])
    return True


def known_speakers(arrays: dict) -> dict:
    """The ``(mean, scale)`` of each speaker a speaker-normalised SVM keeps, by speaker."""
    ids = arrays.get("known_speakers", [])
    return {str(s): (arrays["known_mean"][k], arrays["known_scale"][k]) for k, s in enumerate(ids)}


def predict_scores(
    fitted: FittedSvm, features: np.ndarray, speakers: Sequence[str] | None = None
) -> np.ndarray:
    """Class probabilities, shape (n, len(classes)), columns in ``fitted.classes`` order.

    Rows sum to 1; a class without training clips gets 0. The argmax of a row is the
    fitted SVC's decision when ``fitted.calibration`` is ``"softmax"``. Computed from
    ``fitted.arrays`` alone, so a model read by :func:`load_svm` gives the same numbers.
    With speaker normalisation, ``speakers`` (one per row) groups the rows whose
    statistics standardise each other, or names a speaker :func:`remember_speakers` kept;
    without it, each row is a speaker of one clip.

    Raises
    ------
    ConfigError
        When the features do not have the width the model was trained on, or the model
        was pickled by an msff before this one (it holds no arrays).
    BadClipError
        When a row holds NaN or infinity, naming the rows.
    """
    x = _check_features(features)
    arrays = getattr(fitted, "arrays", None)
    if not arrays:
        raise ConfigError(
            "this SVM was fitted by an older msff (calibrated classifier, no arrays): "
            "rerun the svm_opensmile stage"
        )
    expected = len(arrays["mean"])
    if x.shape[1] != expected:
        raise ConfigError(f"features have {x.shape[1]} columns; the SVM was trained on {expected}")
    if fitted.speaker_prior > 0:
        groups = np.arange(len(x)) if speakers is None else np.asarray(speakers, dtype=object)
        if len(groups) != len(x):
            raise ConfigError(f"{len(x)} feature rows and {len(groups)} speakers")
        x = _by_speaker(x, groups, arrays, fitted.speaker_prior, known_speakers(arrays))
    probabilities = _mapped(fitted.calibration, arrays, pair_values(arrays, x, fitted.kernel))
    scores = np.zeros((len(x), len(fitted.classes)))
    columns = [fitted.classes.index(str(c)) for c in arrays["svm_classes"]]
    scores[:, columns] = probabilities
    return scores


def decision_values(
    arrays: dict[str, np.ndarray], features: np.ndarray, kernel: str = "rbf"
) -> np.ndarray:
    """One-vs-rest decision values of the stored SVC, as ``SVC.decision_function`` gives.

    Shape (n, number of SVM classes); argmax is the decision of ``SVC(break_ties=True)``.
    """
    pairs = pair_values(arrays, features, kernel)
    return _ovr_from_pairs(pairs, len(arrays["svm_classes"]))


def pair_values(
    arrays: dict[str, np.ndarray], features: np.ndarray, kernel: str = "rbf"
) -> np.ndarray:
    """One-vs-one decision values of the stored SVC, shape (n, pairs of SVM classes).

    Column k is pair k = (i, j), i < j in ``svm_classes`` order, positive for class i
    (``SVC.decision_function`` with ``decision_function_shape="ovo"``). Computed in numpy
    from the scaler and the support vectors, a chunk of clips at a time.
    """
    z = (np.asarray(features, np.float64) - arrays["mean"]) / arrays["scale"]
    sv = arrays["support_vectors"]
    coef, intercept, gamma = arrays["dual_coef"], arrays["intercept"], float(arrays["gamma"])
    ends = np.cumsum(arrays["n_support"])
    starts = ends - arrays["n_support"]
    n_classes = len(arrays["svm_classes"])
    out = np.empty((len(z), len(intercept)))
    # Squared distances summed from differences, as libsvm does (the |x|^2 + |y|^2 - 2xy
    # shortcut cancels to ~1e-8 off); chunks of clips keep the difference array small.
    step = max(1, 2**21 // max(1, sv.size))
    for lo in range(0, len(z), step):
        chunk = z[lo : lo + step]
        if kernel == "linear":
            gram = chunk @ sv.T
        else:
            difference = chunk[:, None, :] - sv[None, :, :]
            gram = np.exp(-gamma * np.einsum("nsd,nsd->ns", difference, difference))
        if n_classes == 2:
            # scikit-learn stores binary coefficients negated: positive means classes_[1].
            pairs = -(gram @ coef[0] + intercept[0])[:, None]
        else:
            pairs = np.empty((len(chunk), len(intercept)))
            k = 0
            for i in range(n_classes):
                for j in range(i + 1, n_classes):
                    si, sj = slice(starts[i], ends[i]), slice(starts[j], ends[j])
                    pairs[:, k] = (
                        gram[:, si] @ coef[j - 1, si] + gram[:, sj] @ coef[i, sj] + intercept[k]
                    )
                    k += 1
        out[lo : lo + step] = pairs
    return out


def save_svm(fitted: FittedSvm, path: str | Path) -> None:
    """Write a fitted SVM as HDF5: numeric arrays and plain JSON attributes, no pickle.

    :func:`load_svm` reads it back; its :func:`predict_scores` equals the original's
    bit for bit.
    """
    meta = {
        "format": FORMAT,
        "classes": list(fitted.classes),
        "C": fitted.C,
        "gamma": fitted.gamma,
        "cv_accuracy": fitted.cv_accuracy,
        "folds": fitted.folds,
        "calibration": fitted.calibration,
        "grid": [[c, g, acc] for (c, g), acc in fitted.grid.items()],
        "n_train": fitted.n_train,
        "n_speakers": fitted.n_speakers,
        "seed": fitted.seed,
        "calibration_cv": fitted.calibration_cv,
        "kernel": fitted.kernel,
        "speaker_prior": fitted.speaker_prior,
    }
    with h5py.File(path, "w") as f:
        f.attrs["meta"] = json.dumps(meta)
        for name, value in fitted.arrays.items():
            value = np.asarray(value)
            if value.dtype.kind in "OUS":
                f.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=value)


def load_svm(path: str | Path) -> FittedSvm:
    """Read a model written by :func:`save_svm`; only arrays and JSON are read.

    Raises
    ------
    ConfigError
        When the file is not an msff SVM, or lacks an array prediction needs.
    """
    with h5py.File(path, "r") as f:
        try:
            meta = json.loads(f.attrs["meta"])
        except KeyError:
            raise ConfigError(f"{path}: not an msff SVM file (no meta attribute)") from None
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        arrays = {}
        for name, dataset in f.items():
            value = dataset[()]
            if h5py.check_string_dtype(dataset.dtype):
                value = np.array([v.decode() for v in value])
            arrays[name] = value
    needed = {"mean", "scale", "support_vectors", "dual_coef", "intercept", "n_support"}
    needed |= {"gamma", "svm_classes"}
    needed |= set(MAPPING[meta["calibration"]])
    needed |= {"speaker_mean", "speaker_var"} if meta.get("speaker_prior") else set()
    missing = sorted(needed - set(arrays))
    if missing:
        raise ConfigError(f"{path}: arrays {missing} are missing")
    return FittedSvm(
        model=None,
        classes=meta["classes"],
        C=meta["C"],
        gamma=meta["gamma"],
        cv_accuracy=meta["cv_accuracy"],
        folds=meta["folds"],
        calibration=meta["calibration"],
        grid={(c, g): acc for c, g, acc in meta["grid"]},
        n_train=meta["n_train"],
        n_speakers=meta["n_speakers"],
        seed=meta["seed"],
        arrays=arrays,
        calibration_cv=meta["calibration_cv"],
        kernel=meta.get("kernel", "rbf"),  # files written before linear kernels: RBF
        speaker_prior=meta.get("speaker_prior", 0.0),  # and before speaker normalisation
    )


def _svm_arrays(model: Pipeline) -> dict[str, np.ndarray]:
    scaler, svc = model.named_steps["standardscaler"], model.named_steps["svc"]
    return {
        "mean": scaler.mean_.copy(),
        "scale": scaler.scale_.copy(),
        "support_vectors": svc.support_vectors_.copy(),
        "dual_coef": svc.dual_coef_.copy(),
        "intercept": svc.intercept_.copy(),
        "n_support": svc.n_support_.astype(np.int64),
        # The numeric gamma "scale"/"auto" resolved to (scikit-learn keeps it as _gamma).
        "gamma": np.float64(svc._gamma),
        "svm_classes": np.array([str(c) for c in svc.classes_]),
    }


def _ovr_from_pairs(pairs: np.ndarray, n_classes: int) -> np.ndarray:
    """Votes plus a confidence in (-1/3, 1/3), scikit-learn's OvO -> OvR transform.

    ``pairs[:, k]`` is the decision value of pair k = (i, j), i < j, positive for i.
    """
    if n_classes == 2:
        d = pairs[:, 0]
        return np.stack([d, -d], axis=1)
    votes = np.zeros((len(pairs), n_classes))
    confidence = np.zeros((len(pairs), n_classes))
    k = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            confidence[:, i] += pairs[:, k]
            confidence[:, j] -= pairs[:, k]
            votes[:, i] += pairs[:, k] >= 0
            votes[:, j] += pairs[:, k] < 0
            k += 1
    return votes + confidence / (3 * (np.abs(confidence) + 1))


def _pair_classes(n_classes: int) -> list[tuple[int, int]]:
    """The classes (i, j), i < j, of each one-vs-one column, in libsvm's order."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def _n_classes(pairs: np.ndarray) -> int:
    """Classes of ``pairs`` columns: n (n - 1) / 2 = columns."""
    return int(round((1 + np.sqrt(1 + 8 * pairs.shape[1])) / 2))


def _present_groups(pairs: np.ndarray):
    """Rows sharing which classes they were scored on (a fold's SVC may lack some: NaN).

    Yields (rows, present classes, their pairs' columns).
    """
    index = _pair_classes(_n_classes(pairs))
    finite = np.isfinite(pairs)
    for pattern in np.unique(finite, axis=0):
        rows = (finite == pattern).all(axis=1)
        present = sorted(
            {c for (i, j), ok in zip(index, pattern, strict=True) if ok for c in (i, j)}
        )
        columns = [k for k, (i, j) in enumerate(index) if i in present and j in present]
        yield rows, present, columns


def _ovr_of(pairs: np.ndarray) -> np.ndarray:
    """One-vs-rest decision values from one-vs-one ones; NaN for a class not scored on."""
    out = np.full((len(pairs), _n_classes(pairs)), np.nan)
    for rows, present, columns in _present_groups(pairs):
        out[np.ix_(rows, present)] = _ovr_from_pairs(pairs[rows][:, columns], len(present))
    return out


def _coupled(pairwise: np.ndarray) -> np.ndarray:
    """Class probabilities from pairwise ones (Wu, Lin & Weng 2004, method 2).

    ``pairwise[:, k]`` is P(i | i or j) for pair k = (i, j). The probabilities p minimise
    sum_i sum_(j != i) (r_ji p_i - r_ij p_j)^2 with sum(p) = 1, a linear system.
    """
    n_classes = _n_classes(pairwise)
    r = np.zeros((len(pairwise), n_classes, n_classes))  # r[:, i, j] = P(i | i or j)
    for k, (i, j) in enumerate(_pair_classes(n_classes)):
        r[:, i, j], r[:, j, i] = pairwise[:, k], 1 - pairwise[:, k]
    q = -r.transpose(0, 2, 1) * r  # q_ij = -r_ji r_ij
    diagonal = np.arange(n_classes)
    q[:, diagonal, diagonal] = (r.transpose(0, 2, 1) ** 2).sum(axis=2)  # q_ii = sum_j r_ji^2
    system = np.zeros((len(pairwise), n_classes + 1, n_classes + 1))
    system[:, :n_classes, :n_classes] = q
    system[:, :n_classes, n_classes] = system[:, n_classes, :n_classes] = 1
    right = np.zeros((len(pairwise), n_classes + 1, 1))
    right[:, n_classes] = 1
    p = np.clip(np.linalg.solve(system, right)[:, :n_classes, 0], 0, None)
    return p / p.sum(axis=1, keepdims=True)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax; NaN logits (a class the fold never saw) get probability 0."""
    logits = np.where(np.isnan(logits), -np.inf, logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _scored(decision: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Which out-of-fold rows have a decision value for their own class.

    A row has none (NaN) where its fold's training speakers lacked its class: it says
    nothing of how sure the SVM is, and no mapping can be fitted on it.
    """
    return np.isfinite(decision[np.arange(len(target)), target])


def _fit_beta(decision: np.ndarray, target: np.ndarray) -> float:
    """Inverse temperature minimising the log loss of ``softmax(beta * decision)``.

    The loss is convex in beta (a log-sum-exp of linear functions minus a linear one),
    so a golden-section search on [0, BETA_MAX] finds its minimum.
    """
    rows = _scored(decision, target)
    decision, target = decision[rows], target[rows]
    if not len(target):
        return float(UNTEMPERED["beta"])

    def loss(beta: float) -> float:
        return _log_loss(_softmax(beta * decision), target)

    lo, hi = 0.0, BETA_MAX
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float((lo + hi) / 2)


def _fit_mapping(method: str, pairs: np.ndarray, target: np.ndarray) -> dict:
    """The probability mapping's parameters, fitted on out-of-fold one-vs-one values."""
    if method == "coupling":
        index = _pair_classes(_n_classes(pairs))
        a, b = np.zeros(len(index)), np.zeros(len(index))
        for k, (i, j) in enumerate(index):
            rows = np.isfinite(pairs[:, k]) & np.isin(target, (i, j))
            if rows.any():
                a[k], b[k] = _sigmoid_calibration(pairs[rows, k], target[rows] == i)
        return {"pair_a": a, "pair_b": b}
    decision = _ovr_of(pairs)
    if method == "softmax":
        return {"beta": np.float64(_fit_beta(decision, target))}
    n_classes = decision.shape[1]
    a, b = np.zeros(n_classes), np.zeros(n_classes)
    for k in range(n_classes):
        rows = np.isfinite(decision[:, k])
        if rows.any():
            a[k], b[k] = _sigmoid_calibration(decision[rows, k], target[rows] == k)
    return {"platt_a": a, "platt_b": b}


def _mapped(method: str, arrays: dict, pairs: np.ndarray) -> np.ndarray:
    """Probabilities from one-vs-one decision values (rows sum to 1).

    A class the SVC was not trained on (NaN: a fold's training speakers lacked it) gets 0.
    """
    if method == "coupling":
        pairwise = expit(-(arrays["pair_a"] * pairs + arrays["pair_b"]))
        pairwise = np.clip(pairwise, PAIR_MIN, 1 - PAIR_MIN)
        out = np.zeros((len(pairs), _n_classes(pairs)))
        for rows, present, columns in _present_groups(pairs):
            out[np.ix_(rows, present)] = _coupled(pairwise[rows][:, columns])
        return out
    decision = _ovr_of(pairs)
    if method == "softmax":
        return _softmax(float(arrays["beta"]) * decision)
    # Platt: p_k = 1 / (1 + exp(a_k d_k + b_k)), renormalised as CalibratedClassifierCV does.
    p = 1 / (1 + np.exp(arrays["platt_a"] * np.nan_to_num(decision) + arrays["platt_b"]))
    p = np.where(np.isnan(decision), 0.0, p)
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1 / p.shape[1])
    return np.where(total > 0, p / np.where(total > 0, total, 1), uniform)


def _cross_fitted(method: str, pairs, target, fold_of) -> dict[str, float]:
    """Accuracy and log loss of ``method`` on each fold, mapped by the other folds' fit."""
    probabilities = np.zeros((len(pairs), _n_classes(pairs)))
    for k in np.unique(fold_of):
        other, this = fold_of != k, fold_of == k
        params = _fit_mapping(method, pairs[other], target[other])
        probabilities[this] = _mapped(method, params, pairs[this])
    return {
        "accuracy": float((probabilities.argmax(1) == target).mean()),
        "log_loss": _log_loss(probabilities, target),
    }


def _log_loss(probabilities: np.ndarray, target: np.ndarray) -> float:
    true = probabilities[np.arange(len(target)), target]
    return float(-np.log(np.clip(true, 1e-15, None)).mean())


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


def _out_of_fold(
    x, y, splits, C: float, gamma: Gamma, class_weight, classes, kernel: str = "rbf"
) -> tuple:
    """Pooled held-out accuracy of the SVC and its out-of-fold one-vs-one decision values.

    The values have one column per pair of ``classes`` (NaN where a fold's training
    speakers lacked either class), rows in the order of the folds' test parts. They are
    computed as :func:`predict_scores` computes them, so a mapping is fitted on the very
    numbers it will be applied to.
    """
    correct = total = 0
    index = {pair: k for k, pair in enumerate(_pair_classes(len(classes)))}
    pairs = []
    for train, test in splits:
        model = svm_pipeline(C, gamma, class_weight, break_ties=True, kernel=kernel)
        model.fit(x[train], y[train])
        correct += int((model.predict(x[test]) == y[test]).sum())
        total += len(test)
        values = np.full((len(test), len(index)), np.nan)
        fold_classes = [classes.index(c) for c in model.classes_]
        columns = [
            index[(fold_classes[i], fold_classes[j])] for i, j in _pair_classes(len(fold_classes))
        ]
        values[:, columns] = pair_values(_svm_arrays(model), x[test], kernel)
        pairs.append(values)
    return correct / total, np.concatenate(pairs)
