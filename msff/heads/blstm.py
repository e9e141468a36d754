"""The 2-layer BLSTM over windows of a clip's feature sequence (face frames or segments).

A clip's score is the mean of the softmax over its windows; a clip with no feature
(no face found, nothing heard) gets the uniform row and a note.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from msff import cache
from msff.datasets import FeatureWindows, windows
from msff.devices import pick_device
from msff.heads import common
from msff.models.blstm import BLSTM
from msff.train import TrainSettings, predict


def train_blstm(
    features_h5: str,
    clips: list[dict],
    out_scores: str,
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings | dict,
    hidden: int,
    window: int,
    stride: int,
    unseen_note: str,
    device: str = "auto",
    config: dict | None = None,
    checkpoint: str | Path | None = None,
) -> None:
    """The 2-layer BLSTM over windows of a clip's feature sequence."""
    settings = common.as_settings(settings)
    started, dev = time.time(), pick_device(device)
    features, source = cache.read_features(features_h5, [c["clip"] for c in clips])
    common.check_finite_features(features, clips, features_h5, Path(out_model).stem)
    labels = common.labels(clips, classes)

    def windowed(idx):
        return FeatureWindows([features[i] for i in idx], [labels[i] for i in idx], window, stride)

    torch.manual_seed(settings.seed)
    model = BLSTM(features[0].shape[1] if features else 1, hidden, 2, len(classes))
    train_idx, val_idx = common.subset(clips, "train"), common.subset(clips, "val")
    history = common.fit_head(
        model,
        windowed(train_idx),
        windowed(val_idx),
        settings,
        len(classes),
        dev,
        checkpoint,
        Path(out_model).stem,
    )
    every = windowed(range(len(clips)))
    probs = predict(model, every, dev)
    name = f"{source.get('backbone', '')}_blstm"
    common.write_scores(out_scores, clips, classes, probs, every.owner, unseen_note, name)
    meta = dict(
        input_dim=int(features[0].shape[1]) if features else 0,
        hidden=hidden,
        window=window,
        stride=stride,
        classes=classes,
        features=str(features_h5),
        backbone=str(source.get("backbone")),
    )
    common.keep(
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


def load(model_pt: str | Path) -> tuple[BLSTM, dict]:
    """A trained BLSTM and its meta (``infer``'s first argument); it runs on the CPU."""
    saved = common.load(model_pt)
    meta = saved["meta"]
    model = BLSTM(meta["input_dim"], meta["hidden"], 2, len(meta["classes"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), meta


def infer(loaded: tuple[BLSTM, dict], features, batch_windows: int = 256) -> np.ndarray | None:
    """Class probabilities of one clip from its feature sequence; None when it has none.

    ``features``: (n, width) array-like, an HDF5 dataset too; rounded to float16 first,
    as the workflow stores them. Windows are read and scored ``batch_windows`` at a
    time, so memory does not grow with the clip's length.
    """
    model, meta = loaded
    index = windows(len(features), meta["window"], meta["stride"])
    if not index:
        return None
    total = torch.zeros(model.num_classes, dtype=torch.float64)
    for s in range(0, len(index), batch_windows):
        part = index[s : s + batch_windows]
        low = min(int(w.min()) for w in part)
        block = np.asarray(features[low : max(int(w.max()) for w in part) + 1])
        block = block.astype(np.float16).astype(np.float32)
        batch = torch.from_numpy(np.stack([block[w - low] for w in part]))
        with torch.no_grad():
            total += torch.softmax(model(batch), 1).sum(0).double()
    return (total / len(index)).float().numpy()
