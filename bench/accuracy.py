"""Accuracy of the face branch on CK+48: subject-grouped 5-fold CV through the workflow's heads.

The protocol of issue 16 and of ``snakemake crossval``: CK+48 (../shared/data/ckplus48, 3-frame
folders of 48x48 grey face crops, contempt dropped: 204 sequences of 71 subjects, 6 classes),
pre-cropped faces resized to the preset's face size, ``StratifiedGroupKFold`` over subjects
(seeded), in each fold a grouped fifth of the training subjects validates (early stopping,
fusion weights). Every model is trained by the same head functions as the rules
(``msff.crossval.run`` -> ``msff.heads``) with the committed preset's arguments
(``msff.config.head_arguments``); options on the command line override them, one run per
variant, so a change is measured before and after in one run (and from the same fold
scores, the face fusion with weights searched per fold where the preset's ``fusion_rule``
is not ``auto``, and the fusion without ``hog_svm`` where it is on):

    python bench/accuracy.py                                   # the committed preset
    python bench/accuracy.py --variant fc:finetune_blocks=0 --variant last1:finetune_blocks=1
    python bench/accuracy.py --config seed2019.yaml --fold-seed 2018   # the seed alone

Prints one table: per model and variant, accuracy, UAR, per-class recall and minutes.
C3D is off unless --c3d (it stays near the majority rate and costs most of the time), and
fused only where the preset fuses it (the paper preset), as `snakemake crossval` does.
``hog_svm`` (HOG + SVM, config ``models.hog_svm``) is the hand-crafted model a network
must beat, trained on the same folds.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from msff import config
from msff.crossval import fold_assignment, fold_scores, run, tabulate, trained_models
from msff.devices import set_cpu_threads
from msff.stages.faces import precropped_faces
from msff.stages.media import extract_frames

REPO = Path(__file__).resolve().parents[1]


def ckplus_caches(data: Path, work: Path, labels: dict, size: int) -> tuple[list, dict]:
    """Every CK+48 sequence the label map keeps, as a pre-cropped faces cache of side ``size``."""
    records, faces = [], {}
    folder = work / f"faces{size}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(data / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            cls = config.class_of(row["label"], labels)
            if cls is None:
                continue
            clip = row["path"]
            out = folder / f"{clip}.h5"
            if not out.exists():
                frames = folder / f"{clip}.frames.h5"
                extract_frames(clip, str(data / clip), frames, None, None)
                precropped_faces(clip, frames, out, size)
                frames.unlink()
            faces[clip] = str(out)
            records.append({"clip": clip, "class": cls, "speaker": row["speaker"]})
    return records, faces


def face_models(cfg: dict, c3d: bool) -> tuple[list[str], list[str]]:
    """The face models cross-validation trains, and those its fusion weighs.

    As ``snakemake crossval``: C3D (``--c3d``) is trained and tabulated, but fused only
    where the preset fuses it.
    """
    models = cfg["models"]
    trained = trained_models(models["face_backbones"], c3d, models["hog_svm"])
    return trained, config.crossval_fused(config.fused_models(cfg), trained)


def other_fusions(
    records: list, cfg: dict, args, name: str, rule: str, trained: list[str], fused: list[str]
) -> pd.DataFrame:
    """Face fusions the preset does not make, from a run's fold scores.

    The weights searched per fold (rule ``auto``) where the preset's rule is another, the
    preset's rule without ``hog_svm`` where it is on, and both changes undone: changes
    measured before and after in one run. ``trained``, ``fused``: :func:`face_models`.
    """
    classes, seed = cfg["labels"]["classes"], cfg["seed"]
    fold_seed = seed if args.fold_seed is None else args.fold_seed
    run_dir = args.work / args.preset / name
    fold, fold_clips = fold_assignment(records, classes, args.folds, fold_seed)
    scores_of = fold_scores(run_dir, trained, args.folds)
    cases = []
    if rule != "auto":
        cases.append(("face_fusion, searched (auto)", "searched", "auto", fused))
    if "hog_svm" in fused:
        without = [m for m in fused if m != "hog_svm"]
        cases.append(("face_fusion without hog_svm", "without_hog_svm", rule, without))
        if rule != "auto":  # the preset before both changes
            cases.append(("face_fusion without hog_svm, searched", "before", "auto", without))
    rows = []
    for label, folder, chosen, models in cases:
        metrics = tabulate(
            records,
            classes,
            fold,
            fold_clips,
            scores_of,
            run_dir / "folds" / "fer2013_zeroshot.tsv",
            run_dir / folder,
            cfg["fusion"]["step"],
            chosen,
            cfg["fusion"]["min_clips"],
            dict.fromkeys(["fer2013_zeroshot", *trained], 0.0),
            seed,
            models,
        )
        row = metrics[metrics["model"] == "face_fusion"].copy()
        row["model"] = label
        rows.append(row)
    return pd.concat(rows) if rows else pd.DataFrame()


def variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, preset ``models`` overrides).

    Values are YAML; a comma inside brackets or braces belongs to the value
    (``blstm_speaker_norm={face: 0, audio: 5}``).
    """
    name, _, items = text.partition(":")
    overrides = {}
    for item in filter(None, _top_level_split(items)):
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def _top_level_split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def main() -> None:
    """Run every variant over the folds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ckplus48")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-accuracy"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--c3d", action="store_true", help="also C3D (slow, near majority)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--fold-seed",
        type=int,
        help="draw the folds with this seed, train with the config's (default: the config's)",
    )
    parser.add_argument(
        "--variant",
        type=variant,
        action="append",
        help="NAME:key=value,... preset models overrides (repeatable); default: the preset",
    )
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    set_cpu_threads(args.threads)
    cfg = config.load(args.config)
    cfg["preset"] = args.preset
    size = config.preset(cfg)["faces"]["size"]
    records, faces = ckplus_caches(args.data, args.work, cfg["labels"], size)
    classes = cfg["labels"]["classes"]
    tables = []
    for name, overrides in args.variant or [("preset", {})]:
        changed = copy.deepcopy(cfg)
        changed["presets"][args.preset]["models"].update(overrides)
        config.validate(changed, "config", f"variant {name}")
        started = time.perf_counter()
        rule = config.fusion_settings(changed)["rule"]
        trained, fused = face_models(changed, args.c3d)
        metrics = run(
            records,
            faces,
            args.work / args.preset / name,
            classes,
            config.head_arguments(changed),
            backbones=changed["models"]["face_backbones"],
            c3d=args.c3d,
            weights=changed["weights"],
            folds=args.folds,
            fusion_step=changed["fusion"]["step"],
            device="cpu",
            fusion_rule=rule,
            fusion_min_clips=changed["fusion"]["min_clips"],
            hog_svm=changed["models"]["hog_svm"],
            fused=fused,
            fold_seed=args.fold_seed,
        )
        others = other_fusions(records, changed, args, name, rule, trained, fused)
        metrics = pd.concat([metrics, others])
        metrics.insert(0, "variant", name)
        metrics["minutes"] = metrics["seconds"] / 60
        print(f"{name} {json.dumps(overrides)}: {(time.perf_counter() - started) / 60:.1f} min")
        tables.append(metrics)
    table = pd.concat(tables)
    shown = ["variant", "model", "accuracy", "uar", "majority_rate", "minutes"] + [
        f"recall_{c}" for c in classes if table[f"recall_{c}"].notna().any()
    ]
    print(
        f"CK+48 {len(records)} sequences, {len({r['speaker'] for r in records})} subjects, "
        f"{args.folds}-fold subject-grouped CV, preset {args.preset} (faces {size} px); "
        f"{platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print(table[shown].to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
