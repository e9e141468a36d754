"""One training loop for every head: SGD with momentum, per-epoch decay, early stopping.

The paper trains with batches of 8 clips, learning rate 0.01 decayed by 0.95 per epoch;
every value comes from config. The loop runs on CUDA (bf16 autocast) when the device is
a GPU and on the CPU otherwise; the same seed gives the same run on the same device.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from msff import cache


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters (config ``train``)."""

    batch_size: int = 8
    optimizer: str = "sgd"  # the paper's; "adam" trains from-scratch nets on a CPU budget
    lr: float = 0.01
    lr_decay: float = 0.95
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    patience: int = 5
    class_weighted: bool = False
    augment: bool = True  # flip/translation/crop of faces, noise on spectrograms
    backbone_lr: float | None = None  # fine-tuned backbone blocks; None: lr
    seed: int = 0


@dataclass
class History:
    """Per-epoch losses and accuracies, and the epoch whose weights were kept."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over the classes present); absent classes get 0."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / (counts > 0).sum(), 0)
    return torch.tensor(weights, dtype=torch.float32)


def _autocast(device: torch.device):
    # bf16 needs no loss scaling; on the CPU autocast would only slow small heads down.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, device: torch.device):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        pin_memory=device.type == "cuda",
    )


def _epoch(model, loader, loss_fn, device, optimizer=None) -> tuple[float, float]:
    training = optimizer is not None
    model.train(training)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def param_groups(model: nn.Module, settings: TrainSettings) -> list[dict]:
    """The trainable parameters as optimiser groups.

    A pretrained backbone's fine-tuned blocks (``model.finetuned_parameters()``, see
    :func:`msff.models.build.unfreeze_last`) train at ``settings.backbone_lr`` when set:
    features that already work want smaller steps than a new head.
    """
    tuned = {id(p) for p in getattr(model, "finetuned_parameters", list)()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in tuned]}]
    if tuned:
        lr = settings.backbone_lr or settings.lr
        groups.append({"params": [p for p in trainable if id(p) in tuned], "lr": lr})
    return groups


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    settings: TrainSettings,
    n_classes: int,
    device: torch.device,
    train_labels: Sequence[int] | None = None,
    log=print,
) -> History:
    """Train the parameters of ``model`` that require grad; keep the best epoch's weights.

    The best epoch has the highest validation accuracy (ties: lower validation loss);
    with no validation set, the lowest training loss. Training stops after
    ``settings.patience`` epochs without a better one.
    """
    seed_everything(settings.seed)
    model.to(device)
    params = param_groups(model, settings)
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    elif settings.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        raise ValueError(f"optimizer={settings.optimizer!r} is not 'sgd' or 'adam'")
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=settings.lr_decay)
    weight = None
    if settings.class_weighted:
        if train_labels is None:
            raise ValueError("class_weighted training needs train_labels")
        weight = class_weights(train_labels, n_classes).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    train_loader = _loader(train_set, settings.batch_size, True, settings.seed, device)
    has_val = val_set is not None and len(val_set) > 0
    val_loader = _loader(val_set, settings.batch_size, False, 0, device) if has_val else None
    history = History()
    best_key, best_state, waited = None, None, 0
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _epoch(model, train_loader, loss_fn, device, optimizer)
        scheduler.step()
        row = dict(epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc)
        if has_val:
            val_loss, val_acc = _epoch(model, val_loader, nn.CrossEntropyLoss(), device)
            row.update(val_loss=val_loss, val_acc=val_acc)
            key = (val_acc, -val_loss)
        else:
            key = (-train_loss,)
        row["seconds"] = time.perf_counter() - start
        history.epochs.append(row)
        log(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
        if best_key is None or key > best_key:
            best_key, best_state, waited = key, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            waited += 1
            if waited >= settings.patience:
                history.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """Softmax class probabilities for every item of ``dataset``, in order."""
    model.to(device).eval()
    out = []
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with _autocast(device):
            logits = model(x.to(device))
        out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    n_classes = getattr(model, "num_classes", None)
    return np.concatenate(out) if out else np.zeros((0, n_classes or 0))


def clip_means(
    probs: np.ndarray, owner: Sequence[int], n_clips: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average item probabilities per clip; returns (scores (n_clips, C), seen mask).

    Clips with no item (no face, no audio) get no row of their own: ``seen`` is False
    there and the caller writes the uniform row.
    """
    owner = np.asarray(owner, dtype=int)
    n_classes = probs.shape[1]
    sums = np.zeros((n_clips, n_classes))
    np.add.at(sums, owner, probs)
    counts = np.bincount(owner, minlength=n_clips)
    seen = counts > 0
    scores = np.full((n_clips, n_classes), 1.0 / n_classes)
    scores[seen] = sums[seen] / counts[seen, None]
    return scores, seen


def git_revision(folder: str | Path) -> str:
    """The commit of the checkout that holds ``folder``, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def write_provenance(
    path: str | Path,
    *,
    config: dict,
    settings: TrainSettings,
    history: History,
    started: float,
    finished: float,
    weights: dict,
    device: torch.device,
    extra: dict | None = None,
) -> None:
    """Write the JSON that travels with a trained model: config, seed, revision, curves."""
    record = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)),
        "seconds": round(finished - started, 2),
        "git_revision": git_revision(Path(__file__).parent),
        "device": str(device),
        "settings": asdict(settings),
        "weights": weights,
        "history": asdict(history),
        "config": config,
        **(extra or {}),
    }
    cache.write_text(path, json.dumps(record, indent=2, default=str))
