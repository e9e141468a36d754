"""Fusion weights searched on a handful of validation clips: rule "best" against "one-se".

Run from the repository root::

    python bench/fusion_small_val.py [--draws 300] [--cache PATH]

Real scores: RAVDESS speech (calm dropped), IS09 features as in bench/svm_probability.py.
Three models, all trained on actors 01-08:

- ``svm``: :func:`msff.svm.fit_svm` on all 384 IS09 functionals;
- ``svm_weak``: the same on the first 48 functionals only (a weaker, correlated model);
  with ``--split`` these two are SVMs on functionals 0-191 and 192-383 instead (two
  complementary models, where fusion can win);
- ``chance``: seeded Dirichlet(1) rows, a model at chance (as C3D was on MEAD).

For each validation size n, ``--draws`` random validation sets of n clips are drawn from
actors 09-12; :func:`msff.fusion.search` (step 0.1) picks weights on them under each rule,
and the weights are scored on all clips of actors 13-16. Printed per n and rule: the mean
test accuracy of the chosen weights, the share of draws that give the chance model weight,
and the mean number of models used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from svm_probability import ACTORS, features

from msff import config, fusion, svm

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Fit the two SVMs, run the draws and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/msff_is09_ravdess_speech.npz"))
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 14, 28, 56, 112, 208])
    parser.add_argument(
        "--split",
        action="store_true",
        help="models on disjoint halves of the functionals (complementary) instead",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    labels = config.load(args.config)["labels"]
    classes = labels["classes"]
    table, x_all = features(args.data, args.cache)
    mapped = [config.class_of(label, labels) for label in table["label"]]
    keep = np.array([c is not None for c in mapped])
    x = x_all[keep].astype(np.float64)
    y = np.array([classes.index(c) for c in mapped if c is not None])
    speakers = table["speaker"].to_numpy(str)[keep]
    train = np.isin(speakers, ACTORS[:8])
    val_pool = np.flatnonzero(np.isin(speakers, ACTORS[8:12]))
    test = np.isin(speakers, ACTORS[12:])
    names = [classes[k] for k in y[train]]
    columns = [slice(0, 192), slice(192, 384)] if args.split else [slice(0, 384), slice(0, 48)]
    model_names = ["svm_first_half", "svm_second_half"] if args.split else ["svm", "svm_weak"]
    scores = []
    for cols in columns:
        fitted = svm.fit_svm(x[train][:, cols], names, list(speakers[train]), classes, 0)
        scores.append(svm.predict_scores(fitted, x[:, cols]))
    scores.append(np.random.default_rng(0).dirichlet(np.ones(len(classes)), len(y)))
    print(
        f"RAVDESS speech, calm dropped: train 01-08, validation drawn from 09-12 "
        f"({len(val_pool)} clips), test 13-16 ({int(test.sum())} clips)"
    )
    for name, s in zip([*model_names, "chance"], scores, strict=True):
        print(f"  {name}: test accuracy {(s[test].argmax(1) == y[test]).mean():.3f}")
    rng = np.random.default_rng(1)
    print("\n| val clips | rule | mean test accuracy | chance model weighted | models used |")
    print("|---:|---|---:|---:|---:|")
    for n in [n for n in args.sizes if n <= len(val_pool)]:
        draws = [rng.choice(val_pool, n, replace=False) for _ in range(args.draws)]
        for rule in ("best", "one-se"):
            accuracy, chance, used = [], [], []
            for pick in draws:
                result = fusion.search([s[pick] for s in scores], y[pick], 0.1, rule=rule)
                fused = fusion.fuse([s[test] for s in scores], result.weights)
                accuracy.append((fused.argmax(1) == y[test]).mean())
                chance.append(result.weights[2] > 0)
                used.append((result.weights > 0).sum())
            print(
                f"| {n} | {rule} | {np.mean(accuracy):.3f} | {np.mean(chance):.2f} | "
                f"{np.mean(used):.2f} |"
            )
    print(f"\n{args.draws} draws per size; total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
