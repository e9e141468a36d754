"""How much the audio BLSTM's seed moves its accuracy, and what an ensemble of seeds gives.

Run from the repository root, after ``bench/audio_ravdess.py`` (whose spectrogram CNN
features it reads; the CNN does not depend on the BLSTM's seed or ensemble)::

    python bench/audio_ravdess.py --folds 4 --variant NAME:    # writes the features
    python bench/blstm_seeds.py --folds 4 --variant NAME [--seeds 5] [--members 3]
    # a fixed split: the same --train/--val/--test as that run, no --folds

For each split (``--folds K``: the K speaker folds of ``audio_ravdess.py``; else the one
fixed split) it trains the workflow's audio BLSTM (``msff.heads.blstm.train_blstm`` with
the preset's ``audio_blstm`` arguments, one member) once per seed ``seed``, ``seed + 1``,
..., on the features ``audio_ravdess.py`` left in ``--work/<preset>/<run>``, and scores
the test clips. It then prints, over every choice of ``--members`` seeds out of
``--seeds`` (and of single seeds), the mean, standard deviation and range of the test
accuracy averaged over the folds, and of each fold: what ``models.blstm_ensemble``
buys beside what a seed alone can land on. A preset's ensemble of k members is the
choice of the first k seeds; the BLSTMs trained here are kept under
``--work/<preset>/<run>/blstm_seeds/<seed>``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import sys
from pathlib import Path

import numpy as np
from audio_ravdess import REPO, SPLIT, UNSEEN, actors, clip_records, requested_splits, run_name

from msff import config, scores
from msff.devices import set_cpu_threads
from msff.heads import blstm


def test_probabilities(work: Path, clips: list[dict], cfg: dict, seed: int) -> np.ndarray:
    """The test clips' probabilities of one BLSTM of ``seed`` over the run's features."""
    classes = cfg["labels"]["classes"]
    arguments = copy.deepcopy(config.head_arguments(cfg)["audio_blstm"])
    arguments["members"] = 1
    arguments["settings"]["seed"] = seed
    out = work / "blstm_seeds" / str(seed)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "scores.tsv").exists():  # a rerun reuses the BLSTMs already trained
        blstm.train_blstm(
            str(work / "vgg19_audio.h5"),
            clips,
            str(out / "scores.tsv"),
            str(out / "model.pt"),
            str(out / "model.json"),
            classes,
            unseen_note=UNSEEN,
            config=cfg,
            **arguments,
        )
    table = scores.read(out / "scores.tsv", classes)
    test = [c["clip"] for c in clips if c["split"] == "test"]
    return table.loc[test, classes].to_numpy()


def main() -> None:
    """Train the BLSTM per seed on every split's features, print singles against ensembles."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-audio-ravdess"))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variant", default="preset", help="the audio_ravdess.py run's name")
    parser.add_argument("--folds", type=int, default=0, help="as audio_ravdess.py's")
    parser.add_argument("--seeds", type=int, default=5, help="BLSTMs per split")
    parser.add_argument("--members", type=int, default=3, help="seeds per ensemble")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (rules: 2)")
    for part, default in SPLIT.items():
        parser.add_argument(f"--{part}", type=actors, default=actors(default), help=default)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, force=True)
    cfg = config.load(args.config)
    cfg["preset"] = args.preset
    set_cpu_threads(args.threads)
    classes = cfg["labels"]["classes"]
    splits = requested_splits(args)
    runs = {run_name(args.variant, k, len(splits)): s for k, s in enumerate(splits, 1)}
    seeds = [cfg["seed"] + i for i in range(args.seeds)]
    probabilities, truth = {}, {}
    for run, split in runs.items():
        work = args.work / args.preset / run
        if not (work / "vgg19_audio.h5").exists():
            parser.error(f"{work / 'vgg19_audio.h5'}: no features; run bench/audio_ravdess.py")
        clips = clip_records(args.data, cfg["labels"], split)
        clips = clips[["clip", "class", "split", "speaker"]].to_dict("records")
        truth[run] = np.array([classes.index(c["class"]) for c in clips if c["split"] == "test"])
        for seed in seeds:
            probabilities[run, seed] = test_probabilities(work, clips, cfg, seed)
            correct = probabilities[run, seed].argmax(1) == truth[run]
            print(f"{run} seed {seed}: test accuracy {correct.mean():.3f}", flush=True)

    def accuracy(run: str, chosen: tuple[int, ...]) -> float:
        mean = np.mean([probabilities[run, s] for s in chosen], axis=0)
        return 100 * float((mean.argmax(1) == truth[run]).mean())

    print()
    print(f"test accuracy %, over every choice of k of the seeds {seeds} (mean of the splits")
    print("first when there are folds), mean / sd / min / max over the choices:")
    for k in sorted({1, args.members}):
        choices = list(itertools.combinations(seeds, k))
        per_run = np.array([[accuracy(run, c) for run in runs] for c in choices])
        columns = {"mean of splits": per_run.mean(1)} if len(runs) > 1 else {}
        columns |= {run: per_run[:, j] for j, run in enumerate(runs)}
        line = [f"k={k} ({len(choices)} choices)"]
        for name, values in columns.items():
            line.append(
                f"{name} {values.mean():.1f} / {values.std():.2f} / {values.min():.1f} / "
                f"{values.max():.1f}"
            )
        print("; ".join(line))
        first_k = per_run[choices.index(tuple(seeds[:k]))]  # what blstm_ensemble: k trains
        print(
            f"  seeds {seeds[:k]}: mean {first_k.mean():.1f}; "
            + " ".join(f"{a:.1f}" for a in first_k)
        )


if __name__ == "__main__":
    main()
