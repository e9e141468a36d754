"""C3D on windows of consecutive aligned faces; a clip's score is the mean over its windows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from msff.datasets import FaceClips, found_rows
from msff.devices import pick_device
from msff.heads import common
from msff.models import c3d
from msff.models.build import Built
from msff.train import TrainSettings, predict


def train_c3d(
    clips: list[dict],
    faces_h5: dict[str, str],
    out_scores: str,
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings | dict,
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
    checkpoint: str | Path | None = None,
) -> None:
    """C3D on windows of ``frames`` consecutive aligned faces, resized to ``size``."""
    settings = common.as_settings(settings)
    started, dev = time.time(), pick_device(device)
    torch.manual_seed(settings.seed)
    built = c3d.build(len(classes), fc_width, width, weights, batch_norm)
    labels = common.labels(clips, classes)
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

    train_set, _ = volumes(common.subset(clips, "train"), settings.augment)
    val_set, _ = volumes(common.subset(clips, "val"), False)
    history = common.fit_head(
        built.model, train_set, val_set, settings, len(classes), dev, checkpoint, "c3d"
    )
    every, seen_idx = volumes(range(len(clips)), False)
    probs = predict(built.model, every, dev, batch_size=8)
    common.write_scores(
        out_scores,
        clips,
        classes,
        probs,
        common.global_owners(every, seen_idx),
        "no face found",
        "c3d",
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
    common.keep(
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


def rebuild(model_pt: str | Path) -> tuple[Built, dict]:
    """A trained C3D from its file (the state dict holds every weight)."""
    saved = common.load(model_pt)
    meta = saved["meta"]
    built = c3d.build(
        len(meta["classes"]), meta["fc_width"], meta["width"], None, meta["batch_norm"]
    )
    built.model.load_state_dict(saved["state_dict"])
    return built, meta


def load(model_pt: str | Path, device: str = "cpu") -> tuple[Built, dict]:
    """A trained C3D ready to score clips on ``device`` (``infer``'s first argument)."""
    built, meta = rebuild(model_pt)
    built.model.to(pick_device(device)).eval()
    return built, meta


def infer(
    loaded: tuple[Built, dict], faces_h5: str | Path, batch_size: int = 8
) -> np.ndarray | None:
    """Class probabilities of one clip: the mean over its windows; None without a face.

    Windows go through the network ``batch_size`` at a time, so memory does not grow
    with the clip's length.
    """
    if not len(found_rows(faces_h5)):
        return None
    built, _ = loaded
    dev = next(built.model.parameters()).device
    return predict(built.model, clip_windows(loaded, faces_h5), dev, batch_size=batch_size).mean(0)


def clip_windows(loaded: tuple[Built, dict], faces_h5: str | Path) -> FaceClips:
    """One clip's test-time windows, prepared as the trained C3D reads them."""
    built, meta = loaded
    return FaceClips(
        [str(faces_h5)],
        [0],
        meta["frames"],
        meta["stride"],
        meta["crop"],
        meta["size"],
        False,
        built.prepare,
    )
