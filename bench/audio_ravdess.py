"""Measure both audio models on RAVDESS speech with a speaker-independent split.

Run from the repository root::

    nice -n 10 python bench/audio_ravdess.py [--data ../shared/data/ravdess_speech]
        [--work /tmp/msff-audio-ravdess] [--preset cpu] [--epochs N] [--threads 2]
        [--variant NAME:key=value;key=value ...] [--out-of-fold K] [--folds K]

``--variant`` overrides values of the preset, one run per variant (default: the preset
as committed): a key of ``models`` (``audio_cnn_layers=[16,M,32,M]``) or of ``audio``
with that prefix (``audio.spectrogram=logmel``); values are YAML. Spectrogram caches are
kept per distinct ``audio`` block (``--work/spectrograms-<hash>``), so variants that
share one reuse it.

The measured run (bench/README.md) was ``--threads 2`` with the defaults: 81 minutes on an
otherwise idle 2-core machine, 76 of them the VGG-19's 15 epochs over 24,054 training
segments each.

RAVDESS speech, actors 01-16 (960 clips), labels mapped by config ``labels.map``
(calm dropped: 832 clips, 7 classes). One fixed split by actor (odd numbers are men):
train 01-10 (5 men, 5 women), validation 11-13, test 14-16; or, with ``--folds 4``, four
speaker folds, each testing 4 actors, validating on the 3 after them and training on the
other 9 (every actor tested once; the summary gives each fold's test accuracy and the
means). The clips go through the
workflow's own stage functions, called in-process with exactly the arguments the rules
pass for the preset:

- ``extract_audio``, ``spectrograms``, ``opensmile`` per clip, in a pool of 2 processes
  (cached in ``--work``: a rerun skips them);
- ``finetune_audio_cnn`` (VGG-19 on the spectrogram segments of the training clips, all
  rate scales, noise), ``audio_features`` (fc7 of every scale-1.0 segment),
  ``train_blstm`` (the BLSTM over windows of segment features): ``vgg19_blstm_audio``;
- ``svm_opensmile`` (IS09 functionals + RBF SVM): ``opensmile_svm``.

Reported for validation and test: accuracy, unweighted average recall (UAR) and per-class
recall of the VGG-19 segment mean (the fine-tuned CNN's own fc8 softmax averaged over a
clip's scale-1.0 segments, computed here from the fc7 features ``audio_features`` wrote;
the workflow writes no scores for it), the VGG-19+BLSTM, the SVM, and their fusion (the
weights :func:`msff.fusion.search` picks on validation by the preset's rule, and by
``auto``, the search, where the preset's rule is another, applied to test); the majority
class rate; and the time of every stage. ``--out-of-fold K`` (config ``fusion.out_of_fold``)
also trains the four model stages K more times over train + val (actors 01-13), each
scoring the actors it left out, and adds the fusion whose weights are searched on those
out-of-fold scores, as the workflow's ``fuse`` does.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import yaml

from msff import config, evaluate, folds, fusion, scores
from msff.devices import set_cpu_threads
from msff.heads import audio_cnn, blstm
from msff.heads.svm import svm_opensmile
from msff.stages import audio as audio_stages
from msff.stages.fuse import search_clips
from msff.stages.media import extract_audio
from msff.train import clip_means

REPO = Path(__file__).resolve().parents[1]
SPLIT = {"train": "01-10", "val": "11-13", "test": "14-16"}
STAGES = ("extract_audio", "spectrograms", "opensmile")
UNSEEN = "no audio, or a silent track"  # the note rule train_blstm_audio passes


def actors(text: str) -> list[str]:
    """Actor ids of a range ``"01-10"`` or a list ``"01,03,05"``."""
    if "-" in text:
        first, last = text.split("-")
        return [f"{a:02d}" for a in range(int(first), int(last) + 1)]
    return [f"{int(a):02d}" for a in text.split(",")]


def speaker_folds(every: list[str], folds: int, val: int = 3) -> list[dict[str, list[str]]]:
    """``folds`` speaker splits of the actors ``every``, each actor tested once.

    Fold k tests the k-th block of consecutive actors, validates on the ``val`` actors
    after it (wrapping round) and trains on the others.
    """
    blocks = [[str(a) for a in b] for b in np.array_split(every, folds)]
    splits = []
    for k, test in enumerate(blocks):
        rest = [a for b in blocks[k + 1 :] + blocks[:k] for a in b]
        splits.append({"train": rest[val:], "val": rest[:val], "test": test})
    return splits


def requested_splits(args) -> list[dict[str, list[str]]]:
    """The speaker splits asked for: ``--folds`` folds of every actor, else the fixed one.

    Folds of every actor in ``--data`` (:func:`speaker_folds`); the fixed split is
    ``--train``/``--val``/``--test``.
    """
    if args.folds > 1:
        every = sorted(pd.read_csv(args.data / "labels.csv", dtype=str)["speaker"].unique())
        return speaker_folds(every, args.folds)
    return [{part: getattr(args, part) for part in SPLIT}]


def run_name(variant: str, k: int, n_splits: int) -> str:
    """The folder of a split's models under ``--work/<preset>``: ``VARIANT-foldK`` of folds."""
    return f"{variant}-fold{k}" if n_splits > 1 else variant


def clip_records(data: Path, labels: dict, split: dict[str, list[str]]) -> pd.DataFrame:
    """The clips of the split's actors that config keeps: clip, path, class, split, speaker."""
    table = pd.read_csv(data / "labels.csv", dtype=str)
    split_of = {actor: part for part, ids in split.items() for actor in ids}
    table = table[table["speaker"].isin(split_of)].copy()
    table["class"] = [config.class_of(label, labels) for label in table["label"]]
    table = table[table["class"].notna()].reset_index(drop=True)
    table["clip"] = [Path(p).stem for p in table["path"]]
    table["path"] = [str(data / p) for p in table["path"]]
    table["split"] = table["speaker"].map(split_of)
    return table


def variant(text: str) -> tuple[str, dict]:
    """``name:key=value;key=value`` -> (name, overrides); ``audio.key`` names an audio value."""
    name, _, items = text.partition(":")
    overrides = {}
    for item in filter(None, items.split(";")):
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def apply(cfg: dict, preset: str, overrides: dict) -> dict:
    """A copy of ``cfg`` with the overrides in its preset, validated."""
    changed = copy.deepcopy(cfg)
    block = changed["presets"][preset]
    for key, value in overrides.items():
        part, _, name = key.rpartition(".")
        block[part or "models"][name] = value
    config.validate(changed, "config", f"overrides {overrides}")
    return changed


def cache_folders(work: Path, audio_params: dict, feature_set: str) -> dict[str, Path]:
    """Where each stage's caches go.

    Spectrograms in a folder of their audio parameters, openSMILE functionals in one of
    their feature set.
    """
    key = hashlib.sha1(json.dumps(audio_params, sort_keys=True).encode()).hexdigest()[:8]
    folders = {stage: work / stage for stage in STAGES}
    folders["spectrograms"] = work / f"spectrograms-{key}"
    folders["opensmile"] = work / f"opensmile-{feature_set}"
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    (folders["spectrograms"] / "audio.json").write_text(json.dumps(audio_params, indent=1))
    return folders


def preprocess(job: tuple) -> dict:
    """extract_audio, spectrograms and opensmile of one clip; seconds of each stage run.

    A stage whose output already exists is skipped (its time is None).
    """
    clip, source, folders, audio_params, feature_set, ffmpeg = job
    paths = {stage: folders[stage] / f"{clip}.h5" for stage in STAGES}
    spectrogram_params = {
        k: v for k, v in audio_params.items() if k not in ("sample_rate", "silence_dbfs")
    }
    run = {
        "extract_audio": lambda: extract_audio(
            clip,
            source,
            paths["extract_audio"],
            sample_rate=audio_params["sample_rate"],
            silence_dbfs=audio_params["silence_dbfs"],
            ffmpeg=ffmpeg,
        ),
        "spectrograms": lambda: audio_stages.spectrograms(
            clip, paths["extract_audio"], paths["spectrograms"], **spectrogram_params
        ),
        "opensmile": lambda: audio_stages.opensmile(
            clip, paths["extract_audio"], paths["opensmile"], feature_set
        ),
    }
    seconds = {}
    for stage in STAGES:
        if paths[stage].exists():
            seconds[stage] = None
            continue
        start = time.perf_counter()
        error = run[stage]()
        seconds[stage] = time.perf_counter() - start
        if error:
            seconds["error"] = error
    return seconds


def _pool_init() -> None:
    torch.set_num_threads(1)  # two processes on two cores
    logging.getLogger("msff").setLevel(logging.WARNING)  # no line per clip


def segment_mean_scores(model_pt: Path, features_h5: Path, clips: list[dict]) -> np.ndarray:
    """The VGG-19's fc8 softmax averaged over each clip's segments (uniform when none).

    fc8 is ``classifier[6]`` applied to the fc7 features ``audio_features`` wrote (dropout
    is the identity at test time), so this is the CNN's own segment-level prediction.
    """
    state = torch.load(model_pt, map_location="cpu", weights_only=True)["state_dict"]
    weight, bias = state["classifier.6.weight"].double(), state["classifier.6.bias"].double()
    probs, owner = [], []
    with h5py.File(features_h5, "r") as f:
        for i, c in enumerate(clips):
            fc7 = torch.from_numpy(f[c["clip"]][()].astype(np.float64))
            if len(fc7):
                probs.append(torch.softmax(fc7 @ weight.T + bias, 1).numpy())
                owner += [i] * len(fc7)
    n_classes = len(bias)
    stacked = np.concatenate(probs) if probs else np.zeros((0, n_classes))
    return clip_means(stacked, owner, len(clips))[0]


def history_line(provenance: Path) -> str:
    """Epochs run, best epoch, seconds per epoch and the accuracy curves of a trained model."""
    record = json.loads(provenance.read_text())
    epochs = record["history"]["epochs"]
    seconds = np.mean([e["seconds"] for e in epochs])
    items = record.get("training_segments")
    items = f", {items} training segments" if items else ""
    train = " ".join(f"{e['train_acc']:.2f}" for e in epochs)
    val = " ".join(f"{e.get('val_acc', float('nan')):.2f}" for e in epochs)
    return (
        f"{len(epochs)} epochs (best {record['history']['best_epoch']}, "
        f"stopped early: {record['history']['stopped_early']}), {seconds:.0f} s/epoch{items}\n"
        f"    train acc: {train}\n    val acc:   {val}"
    )


class Timer:
    """Wall-clock seconds of named stages, in the order they ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, work, *args, **kwargs):
        """Run ``work(*args, **kwargs)``, record and print its seconds, return its result."""
        start = time.perf_counter()
        out = work(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - start
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {self.seconds[name]:.1f} s", flush=True)
        return out


def train_models(clips, out, timer, prefix, cfg, heads, spectrograms, opensmile) -> None:
    """The four model stages of the workflow on ``clips``, writing into ``out``."""
    classes = cfg["labels"]["classes"]
    out.mkdir(parents=True, exist_ok=True)
    timer(
        prefix + "finetune_audio_cnn",
        audio_cnn.finetune_audio_cnn,
        clips,
        spectrograms,
        out / "vgg19_audio_cnn.pt",
        out / "vgg19_audio_cnn.json",
        classes,
        weights=cfg["weights"].get("vgg19"),
        config=cfg,
        **heads["audio_cnn"],
    )
    timer(
        prefix + "audio_features",
        audio_cnn.audio_features,
        str(out / "vgg19_audio_cnn.pt"),
        clips,
        spectrograms,
        str(out / "vgg19_audio.h5"),
    )
    timer(
        prefix + "train_blstm_audio",
        blstm.train_blstm,
        str(out / "vgg19_audio.h5"),
        clips,
        str(out / "vgg19_blstm_audio.tsv"),
        str(out / "vgg19_blstm_audio.pt"),
        str(out / "vgg19_blstm_audio.json"),
        classes,
        **heads["audio_blstm"],
        unseen_note=UNSEEN,
        config=cfg,
    )
    timer(
        prefix + "svm_opensmile",
        svm_opensmile,
        clips,
        opensmile,
        str(out / "opensmile_svm.tsv"),
        str(out / "opensmile_svm.json"),
        str(out / "opensmile_svm.pkl"),
        classes,
        **heads["svm"],
    )


def run_variant(name, overrides, cfg, args, table, done, preprocess_s) -> pd.DataFrame:
    """Train and score both audio models for one variant; print its report, return its rows."""
    cfg = apply(cfg, args.preset, overrides)
    preset = config.preset(cfg)
    classes = cfg["labels"]["classes"]
    # The heads' arguments as the rules get them (common.smk's HEADS).
    heads = config.head_arguments(cfg)
    if args.epochs:
        for head in ("audio_cnn", "audio_blstm"):
            heads[head]["settings"]["epochs"] = args.epochs
    clips = table[["clip", "class", "split", "speaker"]].to_dict("records")
    folders = cache_folders(args.work, preset["audio"], preset["models"]["svm_features"])
    spectrograms = {c: str(folders["spectrograms"] / f"{c}.h5") for c in table["clip"]}
    opensmile = {c: str(folders["opensmile"] / f"{c}.h5") for c in table["clip"]}
    out = args.work / args.preset / name
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timer = Timer()
    train_models(clips, out, timer, "", cfg, heads, spectrograms, opensmile)
    out_of_fold = {}
    if args.out_of_fold:
        # fusion.out_of_fold: every model trained k more times over train + val, each scoring
        # the actors it left out; the fusion searches on these scores (rule fold_* and fuse).
        for j, fold_clips in enumerate(
            folds.out_of_fold_records(clips, classes, args.out_of_fold, cfg["seed"])
        ):
            fold_out = out / "out_of_fold" / f"fold{j}"
            held = sorted({c["speaker"] for c in fold_clips if c["split"] == "test"})
            print(f"out-of-fold training {j}: actors {','.join(held)} held out", flush=True)
            train_models(
                fold_clips, fold_out, timer, f"fold{j} ", cfg, heads, spectrograms, opensmile
            )
        out_of_fold = {
            name: [
                str(out / "out_of_fold" / f"fold{j}" / f"{name}.tsv")
                for j in range(args.out_of_fold)
            ]
            for name in ("vgg19_blstm_audio", "opensmile_svm")
        }

    # Scores of every model, clips in `clips` order.
    split = np.array([c["split"] for c in clips])
    truth = np.array([classes.index(c["class"]) for c in clips])
    rows = {
        "cnn segment mean": segment_mean_scores(
            out / "vgg19_audio_cnn.pt", out / "vgg19_audio.h5", clips
        ),
        "vgg19_blstm_audio": scores.read(out / "vgg19_blstm_audio.tsv", classes)
        .loc[table["clip"], classes]
        .to_numpy(),
        "opensmile_svm": scores.read(out / "opensmile_svm.tsv", classes)
        .loc[table["clip"], classes]
        .to_numpy(),
    }
    val = split == "val"
    searched = {}
    # The preset's rule (config.fusion_settings), and the search it replaced where it is not one.
    step, rule = cfg["fusion"]["step"], config.fusion_settings(cfg)["rule"]
    for spectrogram_model, chooser in itertools.product(
        ("cnn segment mean", "vgg19_blstm_audio"), dict.fromkeys([rule, "auto"])
    ):
        fused = [spectrogram_model, "opensmile_svm"]
        search = fusion.search([rows[k][val] for k in fused], truth[val], step, chooser)
        searched[f"{spectrogram_model} (val, {chooser})"] = search
        rows[f"fusion ({spectrogram_model} + svm), {chooser}"] = fusion.fuse(
            [rows[k] for k in fused], search.weights
        )
    if out_of_fold:
        # The fuse stage's own choice of clips (msff.stages.fuse.search_clips).
        fused = ["vgg19_blstm_audio", "opensmile_svm"]
        matrices, oof_truth, _, _ = search_clips(
            {k: rows[k] for k in fused}, clips, classes, out_of_fold
        )
        search = fusion.search([matrices[k] for k in fused], oof_truth, cfg["fusion"]["step"])
        searched["vgg19_blstm_audio (out_of_fold)"] = search
        for k in fused:
            pooled = evaluate.metrics(oof_truth, matrices[k].argmax(1), classes)
            print(f"{k} out of fold over train + val: accuracy {pooled['accuracy']:.3f}")
        rows["fusion (vgg19_blstm_audio + svm), out-of-fold weights"] = fusion.fuse(
            [rows[k] for k in fused], search.weights
        )

    results = []
    for model, matrix in rows.items():
        for part in ("val", "test"):
            pick = split == part
            got = evaluate.metrics(truth[pick], matrix[pick].argmax(1), classes)
            results.append({"model": model, "split": part, **got})
    counts = np.bincount(truth[split == "train"], minlength=len(classes))
    majority = int(counts.argmax())  # ties: the first class in config order
    for part in ("val", "test"):
        pick = split == part
        got = evaluate.metrics(truth[pick], np.full(pick.sum(), majority), classes)
        results.append({"model": f"majority ({classes[majority]})", "split": part, **got})
    result = pd.DataFrame(results)
    result.columns = [c.removeprefix("recall_") for c in result.columns]
    total_s = time.perf_counter() - started

    n = len(clips)
    print()
    print(f"variant {name} {json.dumps(overrides)}")
    print(f"RAVDESS speech, calm dropped: {n} clips, {len(classes)} classes")
    for part in SPLIT:
        ids = sorted({c["speaker"] for c in clips if c["split"] == part})
        print(f"  {part}: actors {','.join(ids)}, {int((split == part).sum())} clips")
    print(f"preset {args.preset}: audio {json.dumps(preset['audio'])}")
    for head in ("audio_cnn", "audio_blstm", "svm"):
        print(f"  {head} {json.dumps(heads[head])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load average {os.getloadavg()}")
    print()
    ran = {s: [d[s] for d in done if d[s] is not None] for s in STAGES}
    print(f"preprocessing, pool of {args.jobs}: {preprocess_s:.1f} s wall for {n} clips")
    for stage in STAGES:
        if ran[stage]:
            print(
                f"  {stage}: {len(ran[stage])} clips run, {np.mean(ran[stage]):.3f} s per clip "
                f"in one process ({np.sum(ran[stage]):.0f} s in all)"
            )
        else:
            print(f"  {stage}: cached (all {n} clips)")
    errors = [d["error"] for d in done if "error" in d]
    if errors:
        print(f"  {len(errors)} clip errors, first: {errors[0]}")
    with h5py.File(spectrograms[clips[0]["clip"]], "r") as f:
        shape = f["images"].shape
    print(f"  spectrogram cache of {clips[0]['clip']}: {shape} (scales, segments, H, W)")
    print(f"model stages ({args.threads} torch threads):")
    for stage, seconds in timer.seconds.items():
        print(f"  {stage}: {seconds:.1f} s")
    print(f"  CNN:   {history_line(out / 'vgg19_audio_cnn.json')}")
    print(f"  BLSTM: {history_line(out / 'vgg19_blstm_audio.json')}")
    svm_record = json.loads((out / "opensmile_svm.json").read_text())
    print(f"  SVM: {json.dumps({k: svm_record.get(k) for k in ('C', 'gamma', 'cv_accuracy')})}")
    for searched_on, search in searched.items():
        print(
            f"fusion weights (step {cfg['fusion']['step']}): {searched_on} "
            f"{search.weights[0]:.2f}, opensmile_svm {search.weights[1]:.2f}"
            f" (accuracy {search.accuracy:.3f} on the {search.n_clips} clips searched)"
        )
    print()
    columns = ["model", "split", "n_clips", "accuracy", "uar", *classes]
    print(result[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"chance 1/{len(classes)} = {1 / len(classes):.3f}")
    print(f"variant {name}: {total_s:.0f} s ({total_s / 60:.1f} min) of training and scoring")
    result.insert(0, "variant", name)
    result["minutes"] = total_s / 60
    return result


def main() -> None:
    """Preprocess, then per variant train and score both audio models, fuse, print tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-audio-ravdess"))
    parser.add_argument("--preset", default="cpu", help="config preset (default cpu)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (both heads)")
    parser.add_argument("--jobs", type=int, default=2, help="preprocessing processes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (rules: 2)")
    parser.add_argument(
        "--out-of-fold",
        type=int,
        default=0,
        help="also train k more times over train + val and search the fusion weights on "
        "the out-of-fold scores (config fusion.out_of_fold; the paper's k = 3)",
    )
    parser.add_argument(
        "--variant",
        type=variant,
        action="append",
        help="NAME:key=value;... preset overrides (repeatable); default: the preset",
    )
    for part, default in SPLIT.items():
        parser.add_argument(f"--{part}", type=actors, default=actors(default), help=default)
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="k > 1: instead of --train/--val/--test, k speaker folds of every actor in "
        "--data (fold k tests the k-th block of actors, validates on the 3 after it); "
        "prints each model's test accuracy per fold and their mean",
    )
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", force=True
    )
    cfg = config.load(args.config)
    cfg["preset"] = args.preset
    set_cpu_threads(args.threads)  # as the rules do
    pd.set_option("display.width", 160)
    splits = requested_splits(args)
    split_tables = [clip_records(args.data, cfg["labels"], s) for s in splits]
    every_clip = pd.concat(split_tables).drop_duplicates("clip")  # the folds share their clips
    tables = []
    for name, overrides in args.variant or [("preset", {})]:
        variant_preset = config.preset(apply(cfg, args.preset, overrides))
        audio_params = variant_preset["audio"]
        feature_set = variant_preset["models"]["svm_features"]
        folders = cache_folders(args.work, audio_params, feature_set)
        jobs = [
            (c, p, folders, audio_params, feature_set, cfg.get("ffmpeg"))
            for c, p in zip(every_clip["clip"], every_clip["path"], strict=True)
        ]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs, initializer=_pool_init) as pool:
            outcomes = list(pool.map(preprocess, jobs, chunksize=4))
        done = dict(zip(every_clip["clip"], outcomes, strict=True))
        preprocess_s = time.perf_counter() - t0
        for k, table in enumerate(split_tables, 1):
            ran = [done[c] for c in table["clip"]]
            run = run_name(name, k, len(splits))
            result = run_variant(run, overrides, cfg, args, table, ran, preprocess_s)
            tables.append(result.assign(variant=name, fold=k))
    summary = pd.concat(tables)
    summary = summary[~summary["model"].str.startswith("majority")]
    print()
    print("summary (accuracy and UAR on val / test, minutes of training and scoring):")
    wide = summary.pivot_table(
        index=["variant", "model"], columns="split", values=["accuracy", "uar"], sort=False
    )
    wide.columns = [f"{metric}_{part}" for metric, part in wide.columns]
    minutes = summary.groupby(["variant", "model", "fold"], sort=False)["minutes"].first()
    wide["minutes"] = minutes.groupby(level=["variant", "model"], sort=False).sum()
    if len(splits) > 1:
        # Accuracy and UAR above are means over the folds (equal in size for RAVDESS: 4
        # actors of 52 clips), minutes their sum; each fold's test accuracy beside them.
        test = summary[summary["split"] == "test"]
        per_fold = test.pivot_table(
            index=["variant", "model"], columns="fold", values="accuracy", sort=False
        )
        per_fold.columns = [f"test_fold{k}" for k in per_fold.columns]
        print(per_fold.join(wide).to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"(folds: {json.dumps(splits)}; accuracy and UAR: means over the folds)")
        return
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
