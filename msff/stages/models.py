"""Stages that train the neural heads and write their scores files.

finetune_cnn   frame CNN (fer2013 / vgg_face / resnet50) on face frames; also writes the
               frame-only baseline scores (mean of the frame scores of a clip)
cnn_features   the fine-tuned CNN's fc7 features of every found face -> HDF5
train_blstm    2-layer BLSTM over windows of consecutive features (face frames or audio
               segments) -> clip scores = mean over the clip's windows
train_c3d      C3D on windows of consecutive aligned faces
finetune_audio_cnn, audio_features   the same as the frame CNN, on spectrogram segments

Every scores file covers every clip of every split; a clip the model cannot see (no
face found, no or silent audio) gets the uniform row and a note saying why.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from msff import backbones, cache, scores
from msff.datasets import FaceClips, FaceFrames, FeatureWindows, SpectrogramSegments, found_rows
from msff.devices import pick_device
from msff.models import BLSTM
from msff.stages import log
from msff.train import TrainSettings, clip_means, fit, predict, write_provenance


def frame_cnn_options(models: dict) -> dict:
    """The keyword arguments ``finetune_cnn`` takes from a preset's ``models`` block."""
    return dict(
        fc_width=models["fc_width"],
        crop=models["cnn_crop"],
        max_train_frames=models["max_train_frames"],
    )


def blstm_options(models: dict) -> dict:
    """The keyword arguments ``train_blstm`` takes from a preset's ``models`` block."""
    return dict(
        hidden=models["blstm_hidden"], window=models["window"], stride=models["window_stride"]
    )


def c3d_options(models: dict) -> dict:
    """The keyword arguments ``train_c3d`` takes from a preset's ``models`` block.

    C3D's windows overlap by half (stride = half the clip length).
    """
    return dict(
        fc_width=models["fc_width"],
        width=models["c3d_width"],
        frames=models["c3d_frames"],
        size=models["c3d_size"],
        crop=models["cnn_crop"],
        stride=models["c3d_frames"] // 2,
        batch_norm=models["batch_norm"],
    )


def audio_cnn_options(models: dict) -> dict:
    """The keyword arguments ``finetune_audio_cnn`` takes from a preset's ``models`` block."""
    return dict(
        fc_width=models["fc_width"],
        width=models["audio_cnn_width"],
        input_size=models["audio_cnn_input"],
        batch_norm=models["batch_norm"],
    )


def audio_cnn_settings(settings: TrainSettings, models: dict) -> TrainSettings:
    """The spectrogram VGG-19's training settings: every head's, at ``audio_cnn_lr`` when set.

    Its own rate because, trained from scratch with Adam, the 16-conv VGG-19 stays at
    chance at the rate that suits the shallow heads (bench/README.md, audio).
    """
    lr = models.get("audio_cnn_lr")
    return settings if lr is None else dataclasses.replace(settings, lr=lr)


def _labels(clips: list[dict], classes: list[str]) -> list[int]:
    return [classes.index(c["class"]) for c in clips]


def _subset(clips: list[dict], split: str) -> list[int]:
    return [i for i, c in enumerate(clips) if c["split"] == split]


def _save(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    with cache.atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)


def _keep(
    out_model,
    out_provenance,
    model,
    meta,
    config,
    settings,
    history,
    started,
    dev,
    weights: dict,
    extra: dict | None = None,
) -> None:
    """Save a trained model and write its provenance beside it."""
    _save(out_model, model, meta)
    write_provenance(
        out_provenance,
        config=config or {},
        settings=settings,
        history=history,
        started=started,
        finished=time.time(),
        weights=weights,
        device=dev,
        extra={"model": meta, **(extra or {})},
    )


def _load(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _report(clips, rows, classes, name):
    for split in ("train", "val", "test"):
        pick = _subset(clips, split)
        if pick:
            truth = np.array(_labels([clips[i] for i in pick], classes))
            accuracy = float((rows[pick].argmax(1) == truth).mean())
            log.info(
                "%s: %s accuracy %.3f over %d clips (all clips; unseen ones uniform)",
                name,
                split,
                accuracy,
                len(pick),
            )


def _write_scores(out, clips, classes, probs, owner, unseen_note, name) -> np.ndarray:
    rows, seen = clip_means(probs, owner, len(clips))
    notes = ["" if s else unseen_note for s in seen]
    scores.write(out, [c["clip"] for c in clips], [c["split"] for c in clips], rows, classes, notes)
    _report(clips, rows, classes, name)
    return rows


def _fit(model, train_set, val_set, settings, n_classes, device):
    if len(train_set) == 0:
        raise ValueError("no training item: no training clip has a face / audio to learn from")
    per_item = [train_set.labels[o] for o in train_set.owner]
    return fit(model, train_set, val_set, settings, n_classes, device, per_item, log=log.info)


def _global(dataset, idx) -> np.ndarray:
    """Owners of a dataset built on the clips ``idx``, as indices into all clips."""
    return np.asarray(idx, dtype=int)[dataset.owner] if len(dataset) else dataset.owner


def finetune_cnn(
    backbone: str,
    clips: list[dict],
    faces_h5: dict[str, str],
    out_model: str,
    out_provenance: str,
    out_scores: str,
    classes: list[str],
    settings: TrainSettings,
    fc_width: int,
    crop: int,
    max_train_frames: int | None,
    weights: str | None,
    device: str = "auto",
    config: dict | None = None,
) -> None:
    """Fine-tune a frame CNN on the face frames of the training clips."""
    started, dev = time.time(), pick_device(device)
    built = backbones.frame_cnn(backbone, len(classes), fc_width, weights)
    labels = _labels(clips, classes)
    paths = [faces_h5.get(c["clip"], "") for c in clips]

    def frames(idx, train, limit):
        return FaceFrames(
            [paths[i] for i in idx],
            [labels[i] for i in idx],
            crop,
            built.prepare,
            train,
            settings.seed,
            limit,
        )

    train_idx = [i for i in _subset(clips, "train") if paths[i]]
    val_idx = [i for i in _subset(clips, "val") if paths[i]]
    history = _fit(
        built.model,
        frames(train_idx, settings.augment, max_train_frames),
        frames(val_idx, False, max_train_frames),
        settings,
        len(classes),
        dev,
    )
    meta = dict(
        backbone=backbone,
        fc_width=fc_width,
        crop=crop,
        classes=classes,
        weights=built.weights,
        pretrained=built.pretrained,
    )
    seen_idx = [i for i, p in enumerate(paths) if p]
    every = frames(seen_idx, False, None)
    probs = predict(built.model, every, dev)
    _write_scores(
        out_scores,
        clips,
        classes,
        probs,
        _global(every, seen_idx),
        "no face found",
        f"{backbone} frames",
    )
    _keep(
        out_model,
        out_provenance,
        built.model,
        meta,
        config,
        settings,
        history,
        started,
        dev,
        {backbone: built.weights},
        extra={"n_scored_frames": len(every)},
    )


def _rebuild(model_pt: str) -> tuple[backbones.Built, dict]:
    saved = _load(model_pt)
    meta = saved["meta"]
    # The architecture is rebuilt without weight files: the state dict holds them all.
    if meta["backbone"] == "vgg19_audio":
        built = backbones.audio_cnn(
            len(meta["classes"]),
            meta["fc_width"],
            meta["width"],
            None,
            meta["input_size"],
            meta["batch_norm"],
        )
    elif meta["backbone"] == "c3d":
        built = backbones.c3d(
            len(meta["classes"]), meta["fc_width"], meta["width"], None, meta["batch_norm"]
        )
    else:
        built = backbones.frame_cnn(meta["backbone"], len(meta["classes"]), meta["fc_width"], None)
    built.model.load_state_dict(saved["state_dict"])
    return built, meta


@torch.no_grad()
def _features(model, batches, dev) -> np.ndarray:
    model.to(dev).eval()
    cuda = dev.type == "cuda"
    if cuda:  # what bench/stages.py times the bare backbone with on a card
        model.to(memory_format=torch.channels_last)
    out = []
    with torch.autocast(dev.type, torch.bfloat16, enabled=cuda):
        for x in batches:
            if cuda:  # pinned pages: the copy to the card overlaps the previous batch
                x = x.pin_memory().to(dev, non_blocking=True)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
            out.append(model.features(x.to(dev)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.fc_width), np.float32)


def cnn_features(
    model_pt: str,
    clips: list[dict],
    faces_h5: dict[str, str],
    out: str,
    device: str = "auto",
    batch_size: int = 64,
) -> None:
    """The fc7 features of every found face of every clip, one HDF5 group per clip."""
    dev = pick_device(device)
    built, meta = _rebuild(model_pt)
    _write_features(
        out,
        clips,
        meta,
        lambda c: _face_batches(faces_h5.get(c), meta["crop"], built.prepare, batch_size),
        built.model,
        dev,
    )


def _face_batches(path, crop, prepare, batch_size):
    from msff.datasets import centre_crop

    if not path:
        return []
    rows = found_rows(path)
    with h5py.File(path, "r") as f:
        faces = f["faces"]
        return [
            prepare(centre_crop(faces[rows[i : i + batch_size]], crop))
            for i in range(0, len(rows), batch_size)
        ]


def _write_features(out, clips, meta, batches_of, model, dev) -> None:
    with cache.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            backbone=meta["backbone"], fc_width=meta["fc_width"], weights=meta["weights"]
        )
        for c in clips:
            features = _features(model, batches_of(c["clip"]), dev)
            f.create_dataset(
                c["clip"], data=features.astype(np.float16), compression="gzip", compression_opts=1
            )


def train_blstm(
    features_h5: str,
    clips: list[dict],
    out_scores: str,
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings,
    hidden: int,
    window: int,
    stride: int,
    unseen_note: str,
    device: str = "auto",
    config: dict | None = None,
) -> None:
    """The 2-layer BLSTM over windows of a clip's feature sequence."""
    started, dev = time.time(), pick_device(device)
    with h5py.File(features_h5, "r") as f:
        features = [f[c["clip"]][()].astype(np.float32) for c in clips]
        source = dict(f.attrs)
    labels = _labels(clips, classes)

    def windows(idx):
        return FeatureWindows([features[i] for i in idx], [labels[i] for i in idx], window, stride)

    torch.manual_seed(settings.seed)
    model = BLSTM(features[0].shape[1] if features else 1, hidden, 2, len(classes))
    train_idx, val_idx = _subset(clips, "train"), _subset(clips, "val")
    history = _fit(model, windows(train_idx), windows(val_idx), settings, len(classes), dev)
    every = windows(range(len(clips)))
    probs = predict(model, every, dev)
    name = f"{source.get('backbone', '')}_blstm"
    _write_scores(out_scores, clips, classes, probs, every.owner, unseen_note, name)
    meta = dict(
        input_dim=int(features[0].shape[1]) if features else 0,
        hidden=hidden,
        window=window,
        stride=stride,
        classes=classes,
        features=str(features_h5),
        backbone=str(source.get("backbone")),
    )
    _keep(
        out_model,
        out_provenance,
        model,
        meta,
        config,
        settings,
        history,
        started,
        dev,
        {"features": str(source.get("weights"))},
    )


def train_c3d(
    clips: list[dict],
    faces_h5: dict[str, str],
    out_scores: str,
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings,
    fc_width: int,
    width: float,
    frames: int,
    size: int,
    crop: int,
    stride: int,
    weights: str | None,
    batch_norm: bool = False,
    device: str = "auto",
    config: dict | None = None,
) -> None:
    """C3D on windows of ``frames`` consecutive aligned faces, resized to ``size``."""
    started, dev = time.time(), pick_device(device)
    torch.manual_seed(settings.seed)
    built = backbones.c3d(len(classes), fc_width, width, weights, batch_norm)
    labels = _labels(clips, classes)
    paths = [faces_h5.get(c["clip"], "") for c in clips]

    def volumes(idx, train):
        idx = [i for i in idx if paths[i]]
        data = FaceClips(
            [paths[i] for i in idx],
            [labels[i] for i in idx],
            frames,
            stride,
            crop,
            size,
            train,
            built.prepare,
            settings.seed,
        )
        return data, idx

    train_set, _ = volumes(_subset(clips, "train"), settings.augment)
    val_set, _ = volumes(_subset(clips, "val"), False)
    history = _fit(built.model, train_set, val_set, settings, len(classes), dev)
    every, seen_idx = volumes(range(len(clips)), False)
    probs = predict(built.model, every, dev, batch_size=8)
    _write_scores(
        out_scores, clips, classes, probs, _global(every, seen_idx), "no face found", "c3d"
    )
    meta = dict(
        backbone="c3d",
        crop=crop,
        stride=stride,
        fc_width=fc_width,
        width=width,
        batch_norm=batch_norm,
        frames=frames,
        size=size,
        classes=classes,
        weights=built.weights,
    )
    _keep(
        out_model,
        out_provenance,
        built.model,
        meta,
        config,
        settings,
        history,
        started,
        dev,
        {"c3d": built.weights},
    )


def finetune_audio_cnn(
    clips: list[dict],
    spectrograms_h5: dict[str, str],
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings,
    fc_width: int,
    width: float,
    input_size: int,
    weights: str | None,
    gaussian_std: float,
    salt_pepper: float,
    batch_norm: bool = False,
    device: str = "auto",
    config: dict | None = None,
) -> None:
    """Train VGG-19 on spectrogram segments (all rate scales, noise) of the training clips."""
    started, dev = time.time(), pick_device(device)
    torch.manual_seed(settings.seed)
    built = backbones.audio_cnn(len(classes), fc_width, width, weights, input_size, batch_norm)
    labels = _labels(clips, classes)
    paths = [spectrograms_h5.get(c["clip"], "") for c in clips]

    def segments(idx, train):
        idx = [i for i in idx if paths[i]]
        return SpectrogramSegments(
            [paths[i] for i in idx],
            [labels[i] for i in idx],
            train,
            built.prepare,
            gaussian_std if settings.augment else 0.0,
            salt_pepper if settings.augment else 0.0,
            settings.seed,
        ), idx

    train_set, _ = segments(_subset(clips, "train"), True)
    val_set, _ = segments(_subset(clips, "val"), False)
    history = _fit(built.model, train_set, val_set, settings, len(classes), dev)
    meta = dict(
        backbone="vgg19_audio",
        fc_width=fc_width,
        width=width,
        batch_norm=batch_norm,
        input_size=input_size,
        classes=classes,
        weights=built.weights,
        pretrained=built.pretrained,
    )
    _keep(
        out_model,
        out_provenance,
        built.model,
        meta,
        config,
        settings,
        history,
        started,
        dev,
        {"vgg19": built.weights},
        extra={"augmentation": {"gaussian_std": gaussian_std, "salt_pepper": salt_pepper}},
    )


def audio_features(
    model_pt: str,
    clips: list[dict],
    spectrograms_h5: dict[str, str],
    out: str,
    device: str = "auto",
    batch_size: int = 64,
) -> None:
    """The fc7 features of every scale-1.0 segment of every clip that can be heard."""
    dev = pick_device(device)
    built, meta = _rebuild(model_pt)

    def batches(clip):
        path = spectrograms_h5.get(clip)
        if not path:
            return []
        data = SpectrogramSegments([path], [0], False, built.prepare)
        return [
            torch.stack([data[i][0] for i in range(s, min(s + batch_size, len(data)))])
            for s in range(0, len(data), batch_size)
        ]

    _write_features(out, clips, meta, batches, built.model, dev)
