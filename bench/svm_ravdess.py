"""Measure the openSMILE + SVM audio baseline on RAVDESS speech, speaker-independently.

Run from the repository root::

    python bench/svm_ravdess.py [--data ../shared/data/ravdess_speech] [--config config.yaml]
        [--features IS09_emotion ComParE_2016] [--kernels rbf linear]

RAVDESS speech (actors 01-16, 960 clips), labels mapped by config ``labels.map`` (calm
dropped: 832 clips, 7 classes). Four folds of four actors each (01-04, 05-08, 09-12,
13-16: two men and two women per fold); each fold is tested by a model trained on the
other twelve actors. For each openSMILE feature set (``--features``, default IS09) and
kernel (``--kernels``, default rbf), two models on the same features and folds:

- ``msff``: :func:`msff.svm.fit_svm`, C and gamma chosen by speaker-grouped CV inside
  the twelve training actors, calibrated probabilities; a clip's class is the argmax.
- ``reference``: a plain StandardScaler + SVC(rbf, C=10, gamma="scale"), the baseline
  the msff model must match (about 46 % on IS09).

Prints a table per fold and overall for each combination, and the time taken.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from msff import audio, config, svm

REPO = Path(__file__).resolve().parents[1]
FOLDS = [["01", "02", "03", "04"], ["05", "06", "07", "08"], ["09", "10", "11", "12"]]
FOLDS.append(["13", "14", "15", "16"])
SEED = 0


def functionals(job: tuple[str, str]) -> np.ndarray:
    """The openSMILE functionals of one FLAC (16 kHz mono already: no ffmpeg round trip)."""
    path, feature_set = job
    waveform, rate = soundfile.read(path, dtype="float32")
    return audio.opensmile_functionals(waveform, rate, feature_set)[0]


def load(data: Path, labels: dict, feature_set: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The clips config keeps, with their class, and their features."""
    table = pd.read_csv(data / "labels.csv", dtype=str)
    table["class"] = [config.class_of(label, labels) for label in table["label"]]
    table = table[table["class"].notna()].reset_index(drop=True)
    jobs = [(str(data / p), feature_set) for p in table["path"]]
    with ProcessPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        features = np.stack(list(pool.map(functionals, jobs, chunksize=16)))
    return table, features


def _gamma(text: str) -> float | str:
    return text if text in ("scale", "auto") else float(text)


def main() -> None:
    """Run the four folds for each feature set and kernel and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--c-grid", type=float, nargs="+", default=list(svm.C_GRID))
    parser.add_argument("--gamma-grid", type=_gamma, nargs="+", default=list(svm.GAMMA_GRID))
    parser.add_argument("--folds", type=int, default=svm.FOLDS, help="inner speaker folds")
    parser.add_argument(
        "--features", nargs="+", default=[audio.IS09_NAME], choices=sorted(audio.FEATURE_SETS)
    )
    parser.add_argument("--kernels", nargs="+", default=["rbf"], choices=svm.KERNELS)
    args = parser.parse_args()
    labels = config.load(args.config)["labels"]
    classes = labels["classes"]
    pd.set_option("display.width", 140)
    summary = []
    for feature_set in args.features:
        start = time.perf_counter()
        table, x = load(args.data, labels, feature_set)
        extract_s = time.perf_counter() - start
        y = table["class"].to_numpy()
        speakers = table["speaker"].to_numpy()
        print(f"RAVDESS speech, actors 01-16, calm dropped: {len(y)} clips, {len(classes)} classes")
        print(f"{feature_set} features ({x.shape[1]}) of {len(y)} clips: {extract_s:.1f} s")
        for kernel in args.kernels:
            result = run_folds(x, y, speakers, classes, kernel, args)
            n = result["n test"]
            pooled = {
                col: float((result[col] * n).sum() / n.sum())
                for col in ("msff", "reference", "majority")
            }
            print(
                f"{feature_set}, {kernel} kernel; msff grid: C {args.c_grid}, gamma "
                f"{args.gamma_grid}, {args.folds} inner folds"
            )
            print(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            print(
                "pooled over folds: msff {msff:.3f}  reference (rbf, C=10) {reference:.3f}  "
                "majority {majority:.3f}".format(**pooled)
            )
            summary.append(
                {"features": feature_set, "kernel": kernel, **pooled}
                | {"fit s": float(result["fit s"].sum()), "extract s": extract_s}
            )
    print()
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"{os.cpu_count()} cores")


def run_folds(x, y, speakers, classes, kernel, args) -> pd.DataFrame:
    """One row per fold of four test actors: msff's SVM, the reference, the majority rate."""
    rows = []
    for k, test_actors in enumerate(FOLDS):
        test = np.isin(speakers, test_actors)
        train = ~test
        t0 = time.perf_counter()
        fitted = svm.fit_svm(
            x[train],
            list(y[train]),
            list(speakers[train]),
            classes,
            SEED,
            args.c_grid,
            args.gamma_grid,
            args.folds,
            kernel=kernel,
        )
        predicted = np.asarray(classes)[svm.predict_scores(fitted, x[test]).argmax(axis=1)]
        fit_s = time.perf_counter() - t0
        reference = svm.svm_pipeline(10.0, "scale").fit(x[train], y[train])
        majority = pd.Series(y[train]).value_counts().index[0]
        rows.append(
            {
                "fold": k + 1,
                "test actors": "-".join((test_actors[0], test_actors[-1])),
                "n test": int(test.sum()),
                "msff": float((predicted == y[test]).mean()),
                "reference": float((reference.predict(x[test]) == y[test]).mean()),
                "majority": float((y[test] == majority).mean()),
                "C": fitted.C,
                "gamma": fitted.gamma,
                "inner cv": fitted.cv_accuracy,
                "calibration": fitted.calibration,
                "fit s": fit_s,
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
