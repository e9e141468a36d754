"""The `paper` preset on a card: images/s of every backbone, one epoch of every head, memory.

Run from the repository root on a machine with a GPU::

    python bench/gpu.py --device cuda --out bench/gpu          # demo/clips.tsv
    python bench/gpu.py --device cuda --sheet clips.tsv --clips 40 --iterations 50 --out run1

and on a CPU, as the smoke test does (tiny, the paper's sizes all the same)::

    python bench/gpu.py --device cpu --iterations 1 --batch 2 --warmup 0 --seconds 0.4

Every size is the config's `paper` preset. Real inputs: the clips' caches are built first
by the stages' functions (bench/epochs.py), and each backbone gets its own kind of item
prepared by its own ``prepare``:

========== ============================================================ ===========
backbone   item                                                          as in
========== ============================================================ ===========
fer2013    224 crop of the 256-px aligned face, made 64-px grey          finetune_cnn
vgg_face   224 crop of the 256-px aligned face                           finetune_cnn
resnet50   224 crop of the 256-px aligned face                           finetune_cnn
c3d        16 consecutive faces, 224 crop resized to 112 (3x16x112x112)  train_c3d
vgg19      one 300-ms spectrogram segment, 224 x 224                     finetune_audio_cnn
========== ============================================================ ===========

Per backbone, over ``--iterations`` batches of ``--batch`` items (after ``--warmup``
batches not timed):

- **bare forward**, the bound: ``model.features(x)`` on batches already on the device, no
  grad; on a card bf16 autocast and channels_last, as the feature stage runs;
- **inference**: :func:`msff.heads.common.features`, what ``cnn_features`` and
  ``audio_features`` call, on the same batches from host memory (copies included);
- **training**: :func:`msff.train.fit` for one epoch over the items as the head trains
  on them (augmented; spectrograms at every rate scale), SGD at the paper's rate, the
  loop every head trains with; the network is trained as built:
  fc layers only on pretrained convolutions (the paper's fine-tuning), every layer when
  the config names no weight file (from scratch) -- the ``trained`` column says which;

items/s of each, inference and training as a fraction of the bare forward rate, and the
peak of ``torch.cuda.max_memory_allocated`` in inference and in training (empty on a CPU).
Then one epoch of every neural head on the clips (bench/epochs.py; the SVM, which runs
on the CPU, is in bench/epochs.py's own table). ``--out PREFIX`` writes PREFIX.json (both
tables and the machine) and PREFIX_backbones.tsv, PREFIX_heads.tsv.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import epochs  # bench/epochs.py, beside this file
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from msff import config as msff_config
from msff.datasets import FaceClips, FaceFrames, SpectrogramSegments
from msff.devices import set_cpu_threads
from msff.heads import common, frame_cnn
from msff.models import c3d, vgg19
from msff.train import TrainSettings, fit, predict

BACKBONES = ["fer2013", "vgg_face", "resnet50", "c3d", "vgg19"]


def build(name: str, cfg: dict):
    """A backbone at the preset's sizes, as its head builds it (config's weight file)."""
    models, weights = msff_config.preset(cfg)["models"], cfg["weights"].get(name)
    classes = len(cfg["labels"]["classes"])
    if name == "c3d":
        return c3d.build(classes, models["fc_width"], models["c3d_width"], weights, False)
    if name == "vgg19":
        width, size = models["audio_cnn_width"], models["audio_cnn_input"]
        return vgg19.build(classes, models["fc_width"], width, weights, size, models["batch_norm"])
    return frame_cnn.build(name, classes, models["fc_width"], weights)


def items(name: str, built, cfg: dict, caches: dict, labels: dict, train: bool) -> Dataset:
    """The real items this backbone sees, prepared by its own ``prepare``.

    ``train``: augmented as its head trains (faces flipped, shifted and randomly cropped;
    spectrograms at every rate scale with the paper's noise); else as at test time.
    """
    models = msff_config.preset(cfg)["models"]
    augment = train and cfg["train"]["augment"]
    kind = "spectrograms" if name == "vgg19" else "faces"
    paths, targets = list(caches[kind].values()), [labels[c] for c in caches[kind]]
    if name == "c3d":
        frames, size, crop = models["c3d_frames"], models["c3d_size"], models["cnn_crop"]
        return FaceClips(paths, targets, frames, frames // 2, crop, size, augment, built.prepare)
    if name == "vgg19":
        noise = cfg["audio_augmentation"] if augment else dict(gaussian_std=0, salt_pepper=0)
        return SpectrogramSegments(paths, targets, train, built.prepare, **noise)
    return FaceFrames(paths, targets, models["cnn_crop"], built.prepare, augment)


def batches(data: Dataset, batch: int, n: int) -> list[torch.Tensor]:
    """``n`` batches of ``batch`` items, cycling through ``data`` when it has fewer."""
    return [
        torch.stack([data[(b * batch + i) % len(data)][0] for i in range(batch)]) for b in range(n)
    ]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.no_grad()
def bare_forward(model, xs: list[torch.Tensor], dev: torch.device, warmup: int) -> float:
    """Seconds of ``model.features`` over the batches after ``warmup``, inputs on ``dev``.

    On a card: bf16 autocast, and channels_last for images (not C3D's volumes: the
    format is for 4-d tensors), as the feature stage runs.
    """
    model.to(dev).eval()
    last = dev.type == "cuda" and xs[0].dim() == 4
    if last:
        model.to(memory_format=torch.channels_last)
    xs = [x.to(dev) for x in xs]
    if last:
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
        for x in xs[:warmup]:
            model.features(x)
        _sync(dev)
        started = time.perf_counter()
        for x in xs[warmup:]:
            model.features(x)
        _sync(dev)
    return time.perf_counter() - started


def inference(name: str, model, xs: list[torch.Tensor], dev: torch.device, warmup: int) -> float:
    """Seconds of the stage's own call on the batches after ``warmup`` (from host memory).

    Images: :func:`msff.heads.common.features`, what cnn_features and audio_features run;
    C3D's volumes: :func:`msff.train.predict`, how train_c3d and ``c3d.infer`` score windows.
    """

    def run(part):
        if name == "c3d":
            data = TensorDataset(torch.cat(part), torch.zeros(sum(len(x) for x in part)))
            return predict(model, data, dev, batch_size=len(xs[0]))
        return common.features(model, part, dev)

    if warmup:
        run(xs[:warmup])
    started = time.perf_counter()
    run(xs[warmup:])  # both return numpy arrays: the card has finished
    return time.perf_counter() - started


def training(model, data: Dataset, args, dev: torch.device, cfg: dict) -> float:
    """Seconds of one epoch of ``args.iterations`` batches of the heads' training loop."""
    models = msff_config.preset(cfg)["models"]
    # As a head trains: a fresh network in the default memory format, not channels_last.
    model.to(memory_format=torch.contiguous_format)
    settings = TrainSettings(
        batch_size=args.batch,
        optimizer=models["optimizer"],
        lr=models["lr"],
        epochs=1,
        momentum=cfg["train"]["momentum"],
        weight_decay=cfg["train"]["weight_decay"],
    )
    n_classes = len(cfg["labels"]["classes"])

    def epoch(n_batches: int) -> float:
        picked = Subset(data, [i % len(data) for i in range(n_batches * args.batch)])
        history = fit(model, picked, None, settings, n_classes, dev, log=lambda *_: None)
        return history.epochs[0]["seconds"]

    if args.warmup:
        epoch(args.warmup)
    return epoch(args.iterations)


def _peak_mb(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def time_backbone(name: str, cfg: dict, caches: dict, labels: dict, args) -> dict:
    """One row: bare forward, inference and training items/s of one backbone, and memory."""
    dev = torch.device(args.device)
    built = build(name, cfg)
    xs = batches(
        items(name, built, cfg, caches, labels, False), args.batch, args.warmup + args.iterations
    )
    timed = args.iterations * args.batch
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    bare = timed / bare_forward(built.model, xs, dev, args.warmup)
    infer = timed / inference(name, built.model, xs, dev, args.warmup)
    peak_infer = _peak_mb(dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    data = items(name, built, cfg, caches, labels, True)
    train = timed / training(built.model, data, args, dev, cfg)
    row = dict(
        backbone=name,
        item="x".join(str(n) for n in data[0][0].shape),
        trained="fc only (pretrained)" if built.pretrained else "all layers (from scratch)",
        batch=args.batch,
        bare_items_s=bare,
        inference_items_s=infer,
        inference_of_bare=infer / bare,
        train_items_s=train,
        train_of_bare=train / bare,
        peak_inference_mb=peak_infer,
        peak_train_mb=_peak_mb(dev),
    )
    built.model.cpu()
    del built
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return row


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--iterations", type=int, default=20, help="timed batches per backbone")
    p.add_argument("--warmup", type=int, default=2, help="batches run first, not timed")
    p.add_argument("--batch", type=int, default=8, help="items per batch (the paper: 8)")
    p.add_argument("--sheet", type=Path, default=epochs.REPO / "demo" / "clips.tsv")
    p.add_argument("--config", type=Path, default=epochs.REPO / "config.yaml")
    p.add_argument("--clips", type=int, default=None, help="the first N clips of the sheet")
    p.add_argument("--seconds", type=float, default=None, help="cut every clip to this long")
    p.add_argument("--start", type=float, default=1.0, help="where the cut starts, seconds")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--work", type=Path, default=None, help="folder for caches and models")
    p.add_argument("--out", default=None, help="write PREFIX.json, PREFIX_*.tsv")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Build the caches, time every backbone and every head; print and write the tables."""
    args = parse_args(argv)
    set_cpu_threads(args.threads)
    cfg = epochs.load_config(args.config, "paper")
    records = epochs.clip_records(args.sheet, cfg, args.clips)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if args.seconds:
            epochs.cut_clips(records, work, args.start, args.seconds)
        caches = epochs.build_caches(records, cfg, work, args.device)
        classes = cfg["labels"]["classes"]
        labels = {r["clip"]: classes.index(r["class"]) for r in records}
        backbones = [time_backbone(name, cfg, caches, labels, args) for name in BACKBONES]
        heads = epochs.time_heads(records, caches, cfg, work, args.device, neural_only=True)
    result = dict(
        machine=epochs.machine(args.device),
        device=args.device,
        clips=len(records),
        sheet=str(args.sheet),
        iterations=args.iterations,
        backbones=backbones,
        heads=heads,
    )
    print(result["machine"])
    print(f"{len(records)} clips of {args.sheet}, preset paper, device {args.device}\n")
    print(epochs.markdown(backbones), "\n")
    print(epochs.markdown(heads))
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=2))
        pd.DataFrame(backbones).to_csv(f"{args.out}_backbones.tsv", sep="\t", index=False)
        pd.DataFrame(heads).to_csv(f"{args.out}_heads.tsv", sep="\t", index=False)
    return result


if __name__ == "__main__":
    main()
