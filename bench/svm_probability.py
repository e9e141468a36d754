"""Check that the argmax of the openSMILE SVM's probabilities keeps the SVM's decision.

Run from the repository root::

    python bench/svm_probability.py [--data ../shared/data/ravdess_speech] [--cache PATH]

RAVDESS speech (actors 01-16), calm dropped by config ``labels.map``: 832 clips, 7
classes, IS09 functionals (``msff.media.audio`` at 16 kHz, then
``msff.audio.opensmile_functionals``), cached in ``--cache`` (a .npz under /tmp) so a
rerun skips the extraction. Two speaker-independent protocols:

(a) train on actors 01-10 (C chosen by speaker-grouped CV inside them), report on the
    validation actors 11-13 and the test actors 14-16;
(b) four folds of four actors (01-04 ... 13-16), each tested by a model trained on the
    other twelve, pooled.

Models, all on the same features and the same training clips:

- ``before``: the msff SVM as it was (grid search with ``SVC.predict``, then
  ``CalibratedClassifierCV(method="sigmoid", cv=grouped folds, ensemble=False)``);
- ``msff sigmoid`` / ``msff softmax`` / ``msff auto``: :func:`msff.svm.fit_svm` with
  that ``probability``;
- ``plain SVC``: StandardScaler + SVC(rbf, gamma="scale") with the C the msff fit chose
  (libsvm's own ``predict``, vote ties to the first class); ``plain C=1``, ``C=10``:
  fixed C, for reference.

For every msff model: accuracy and UAR of argmax(probabilities), the share of clips where
that argmax equals the plain SVC's ``predict`` (same C) and the fitted SVC's own
``predict`` (``break_ties=True``), and the mean log loss.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV

from msff import audio, config, evaluate, media, svm

REPO = Path(__file__).resolve().parents[1]
SEED = 0
ACTORS = [f"{i:02d}" for i in range(1, 17)]
FOLDS = [ACTORS[k : k + 4] for k in range(0, 16, 4)]


def features(data: Path, cache: Path) -> pd.DataFrame:
    """IS09 functionals of every clip of labels.csv (calm included), cached in ``cache``."""
    table = pd.read_csv(data / "labels.csv", dtype=str)
    if cache.exists():
        saved = np.load(cache, allow_pickle=False)
        if list(saved["path"]) == list(table["path"]):
            return table, saved["x"]
    rows = []
    for path in table["path"]:
        waveform = media.audio(data / path, 16000)
        rows.append(audio.opensmile_functionals(waveform, 16000)[0])
    x = np.stack(rows)
    np.savez(cache, x=x, path=table["path"].to_numpy(str))
    return table, x


def before_fit(x, y, speakers, classes, seed):
    """The msff SVM before this change: C by SVC.predict accuracy, sigmoid calibration."""
    y = np.asarray(y, dtype=object)
    splits = svm.speaker_folds(y, np.asarray(speakers), svm.FOLDS, seed)
    best, best_acc = None, -1.0
    for c in svm.C_GRID:
        correct = 0
        for train, test in splits:
            model = svm.svm_pipeline(c, "scale").fit(x[train], y[train])
            correct += int((model.predict(x[test]) == y[test]).sum())
        if correct / len(y) > best_acc:
            best, best_acc = c, correct / len(y)
    model = CalibratedClassifierCV(
        svm.svm_pipeline(best, "scale"), method="sigmoid", cv=splits, ensemble=False
    ).fit(x, y)

    def predict(x_test):
        probabilities = model.predict_proba(x_test)
        out = np.zeros((len(x_test), len(classes)))
        out[:, [classes.index(c) for c in model.classes_]] = probabilities
        return out

    return best, predict


def _row(case: dict, model: str, scores=None, predicted=None, own=None, C=None, calibration=""):
    """One table row: metrics of ``scores`` (or of hard ``predicted`` labels) on ``case``."""
    truth = case["truth"]
    if scores is not None:
        predicted = scores.argmax(1)
    m = evaluate.metrics(truth, predicted, case["classes"])
    log_loss = np.nan
    if scores is not None:
        true = np.clip(scores[np.arange(len(truth)), truth], 1e-15, None)
        log_loss = float(-np.log(true).mean())
    return {
        "test": case["name"],
        "model": model,
        "C": C,
        "calibration": calibration,
        "n": len(truth),
        "accuracy": m["accuracy"],
        "uar": m["uar"],
        "argmax==plain": float((predicted == case["plain"]).mean()),
        "argmax==own": float((predicted == own).mean()) if own is not None else np.nan,
        "log_loss": log_loss,
    }


def run(x, y, speakers, train, tests, classes) -> list[dict]:
    """Fit every model on ``train``; one row per (model, named test mask)."""
    x_train, y_train, s_train = x[train], list(y[train]), list(speakers[train])
    fits = {
        m: svm.fit_svm(x_train, y_train, s_train, classes, SEED, probability=m)
        for m in ("sigmoid", "softmax", "auto")
    }
    c_before, before = before_fit(x[train], y[train], speakers[train], classes, SEED)
    plain = svm.svm_pipeline(fits["softmax"].C, "scale").fit(x[train], y[train])
    fixed = {c: svm.svm_pipeline(c, "scale").fit(x[train], y[train]) for c in (1.0, 10.0)}

    def index(labels):
        return np.array([classes.index(c) for c in labels])

    rows = []
    for name, test in tests.items():
        case = {
            "name": name,
            "classes": classes,
            "truth": index(y[test]),
            "plain": index(plain.predict(x[test])),
        }
        rows.append(_row(case, "before", before(x[test]), C=c_before, calibration="sigmoid (old)"))
        for m, fitted in fits.items():
            own = index(fitted.model.predict(x[test]))
            scores = svm.predict_scores(fitted, x[test])
            rows.append(
                _row(case, f"msff {m}", scores, own=own, C=fitted.C, calibration=fitted.calibration)
            )
        rows.append(_row(case, "plain SVC", predicted=case["plain"], C=fits["softmax"].C))
        for c, model in fixed.items():
            rows.append(_row(case, f"plain C={c:g}", predicted=index(model.predict(x[test])), C=c))
    return rows


def pooled(rows: pd.DataFrame) -> pd.DataFrame:
    """Clip-weighted means of the fold rows, per model."""
    cols = ["accuracy", "argmax==plain", "argmax==own", "log_loss"]
    out = []
    for model, part in rows.groupby("model", sort=False):
        n = part["n"]
        rec = {"test": "4 folds pooled", "model": model, "C": "/".join(f"{c:g}" for c in part["C"])}
        rec["calibration"] = part["calibration"].iloc[0]
        rec["n"] = int(n.sum())
        rec.update({c: float((part[c] * n).sum(skipna=False) / n.sum()) for c in cols})
        rec["uar"] = float(part["uar"].mean())  # mean of the folds' UAR
        out.append(rec)
    return pd.DataFrame(out)[rows.columns]


def main() -> None:
    """Run both protocols and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/msff_is09_ravdess_speech.npz"))
    args = parser.parse_args()
    labels = config.load(args.config)["labels"]
    classes = labels["classes"]
    start = time.perf_counter()
    table, x_all = features(args.data, args.cache)
    mapped = [config.class_of(label, labels) for label in table["label"]]
    keep = np.array([c is not None for c in mapped])
    x = x_all[keep].astype(np.float64)  # what fit_svm works in, for the plain SVCs too
    y = np.array([c for c in mapped if c is not None], dtype=object)
    speakers = table["speaker"].to_numpy(str)[keep]
    extract_s = time.perf_counter() - start

    pd.set_option("display.width", 160)
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    print(f"RAVDESS speech, calm dropped: {len(y)} clips, {len(classes)} classes")
    print(f"features: {extract_s:.1f} s (cache {args.cache})")
    train = np.isin(speakers, ACTORS[:10])
    tests = {
        "val 11-13": np.isin(speakers, ACTORS[10:13]),
        "test 14-16": np.isin(speakers, ACTORS[13:]),
    }
    a = pd.DataFrame(run(x, y, speakers, train, tests, classes))
    print("\n(a) train 01-10, validation 11-13, test 14-16")
    print(a.to_string(**fmt))
    folds = []
    for k, actors in enumerate(FOLDS):
        test = np.isin(speakers, actors)
        folds += run(x, y, speakers, ~test, {f"fold {k + 1}": test}, classes)
    b = pd.DataFrame(folds)
    print("\n(b) speaker-grouped 4-fold CV over actors 01-16 (train on 12, test on 4)")
    print(b.to_string(**fmt))
    print(pooled(b).to_string(**fmt))
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
