"""Measure the openSMILE + SVM audio baseline on RAVDESS speech, speaker-independently.

Run from the repository root::

    python bench/svm_ravdess.py [--data ../shared/data/ravdess_speech] [--config config.yaml]
        [--features IS09_emotion ComParE_2016] [--kernels rbf linear]
        [--speaker-norm 0 10] [--speaker-clips 1 5 10] [--probability softmax coupling auto]

RAVDESS speech (actors 01-16, 960 clips), labels mapped by config ``labels.map`` (calm
dropped: 832 clips, 7 classes). Four folds of four actors each (01-04, 05-08, 09-12,
13-16: two men and two women per fold); each fold is tested by a model trained on the
other twelve actors. For each openSMILE feature set (``--features``, default IS09) and
kernel (``--kernels``, default rbf), two models on the same features and folds:

- ``msff``: :func:`msff.svm.fit_svm`, C and gamma chosen by speaker-grouped CV inside
  the twelve training actors, probabilities by each ``--probability`` method (default:
  config ``svm.probability``); a clip's class is the argmax.
- ``reference``: a plain StandardScaler + SVC(rbf, C=10, gamma="scale"), the baseline
  the msff model must match (about 46 % on IS09).

``--speaker-norm`` k > 0 fits the msff model with speaker normalisation (k pseudo-clips of
the typical speaker; :mod:`msff.speakers`), each test actor standardised
over all of its clips. ``--speaker-clips`` n also scores each test actor as if the sheet held
only n of its clips at a time: its clips are dealt at random (seeded) into groups of n, each
group standardised over itself (one clip: a lone clip, as ``msff predict`` sees it).

Prints a table per fold and overall for each combination, and the time taken.
"""

from __future__ import annotations

import argparse
import itertools
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
    parser.add_argument("--speaker-norm", type=float, nargs="+", default=[0.0])
    parser.add_argument("--speaker-clips", type=int, nargs="*", default=[])
    parser.add_argument(
        "--probability", nargs="+", choices=svm.PROBABILITY_METHODS, help="default: config's"
    )
    args = parser.parse_args()
    cfg = config.load(args.config)
    labels = cfg["labels"]
    args.probability = args.probability or [cfg["svm"]["probability"]]
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
        for kernel, prior, probability in itertools.product(
            args.kernels, args.speaker_norm, args.probability
        ):
            result = run_folds(x, y, speakers, classes, kernel, prior, probability, args)
            n = result["n test"]
            columns = ["msff", "reference", "majority"]
            columns += [c for c in result if c.startswith("msff, ")]
            pooled = {col: float((result[col] * n).sum() / n.sum()) for col in columns}
            print(
                f"{feature_set}, {kernel} kernel, speaker_norm {prior:g}, probability "
                f"{probability}; msff grid: C "
                f"{args.c_grid}, gamma {args.gamma_grid}, {args.folds} inner folds"
            )
            print(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            print("pooled over folds: " + "  ".join(f"{k} {v:.3f}" for k, v in pooled.items()))
            summary.append(
                {"features": feature_set, "kernel": kernel, "speaker_norm": prior}
                | {"probability": probability, **pooled}
                | {"fit s": float(result["fit s"].sum()), "extract s": extract_s}
            )
    print()
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"{os.cpu_count()} cores")


def run_folds(x, y, speakers, classes, kernel, prior, probability, args) -> pd.DataFrame:
    """One row per fold of four test actors: msff's SVM, the reference, the majority rate."""
    rows = []
    rng = np.random.default_rng(SEED)
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
            speaker_prior=prior,
            probability=probability,
        )
        scored = svm.predict_scores(fitted, x[test], speakers[test])
        predicted = np.asarray(classes)[scored.argmax(axis=1)]
        fit_s = time.perf_counter() - t0
        fewer = {}
        for n in args.speaker_clips if prior > 0 else []:
            groups = dealt(speakers[test], n, rng)
            scored = svm.predict_scores(fitted, x[test], groups)
            fewer[f"msff, {n} clips"] = float(
                (np.asarray(classes)[scored.argmax(1)] == y[test]).mean()
            )
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
                **fewer,
                "C": fitted.C,
                "gamma": fitted.gamma,
                "inner cv": fitted.cv_accuracy,
                "calibration": fitted.calibration,
                "fit s": fit_s,
            }
        )
    return pd.DataFrame(rows)


def dealt(speakers: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A group id per row: each speaker's rows dealt at random into groups of n."""
    groups = np.empty(len(speakers), dtype=object)
    for speaker in np.unique(speakers):
        rows = rng.permutation(np.flatnonzero(speakers == speaker))
        for k, row in enumerate(rows):
            groups[row] = f"{speaker}/{k // n}"
    return groups


if __name__ == "__main__":
    main()
