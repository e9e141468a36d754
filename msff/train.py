"""One training loop for every head: SGD with momentum, per-epoch decay, early stopping.

The paper trains with batches of 8 clips, learning rate 0.01 decayed by 0.95 per epoch;
every value comes from config. The loop runs on CUDA (bf16 autocast) when the device is
a GPU and on the CPU otherwise; the same seed gives the same run on the same device.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
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
from msff.errors import TrainingError
from msff.logs import duration


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
    # exponential: lr_decay per epoch (the paper's); cosine: from lr to 0 over every step
    # of `epochs`; onecycle: up to lr over the first 30 % of the steps, then down (Smith).
    schedule: str = "exponential"
    seed: int = 0
    # DataLoader worker processes that read and augment the next batches while the model
    # trains: for a GPU, which would otherwise wait on HDF5 reads; 0 on a CPU, where they
    # would take the cores from the training itself.
    loader_workers: int = 0
    # The validation accuracy that keeps an epoch and stops training early: "items", that
    # of what the head trains on (frames, spectrogram segments, BLSTM windows), or "clips":
    # each clip's item probabilities averaged, as its scores are. Segments of 300 ms are
    # noisy votes; the clip is what the model is used for.
    validate_on: str = "items"
    # Mixup (Zhang et al., ICLR 2018): each training batch blended with a shuffle of
    # itself, inputs and targets by the same weight, drawn from Beta(mixup, mixup); 0: off.
    # Measured on CK+, MEAD and RAVDESS and taken by neither preset (bench/README.md).
    mixup: float = 0.0
    # L2-SP (after Li et al., ICML 2018): a Gaussian prior centred on the weights training
    # starts from: the loss gains l2_sp / n * 1/2 * sum (w - w_start)^2 over every trained
    # weight, n the training clips (the items' ``owner``; frames of a clip are not
    # independent evidence), so the data outweigh the start in proportion to their clips.
    # A FER2013 frame CNN or BLSTM whose head starts at zero (``frame_head_start:
    # zeroshot``) starts as the zero-shot classifier, and the prior holds it near a small
    # correction of it. All its weights, its fresh fc layers too: only the pretrained
    # blocks and the zero-started classifier gained nothing on CK+ (bench/README.md).
    l2_sp: float = 0.0


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


def _loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    device: torch.device,
    workers: int = 0,
):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        pin_memory=device.type == "cuda",
        num_workers=workers,
        worker_init_fn=_seed_worker if workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    """Give a DataLoader worker's copy of the dataset an augmentation stream of its own.

    Each worker gets a copy of the dataset, ``rng`` included: unseeded, every worker would
    draw the same flips and crops. Its seed is the loader's per-epoch base seed (drawn
    from the loader's generator, which checkpoints keep) plus the worker's id, so a run is
    the same twice and after a resume.
    """
    info = torch.utils.data.get_worker_info()
    (rng,) = _dataset_rngs(info.dataset)
    if rng is not None:
        rng.bit_generator.state = np.random.default_rng(info.seed).bit_generator.state
    random.seed(info.seed)
    np.random.seed(info.seed % 2**32)


SCHEDULES = ("exponential", "cosine", "onecycle")
VALIDATE_ON = ("items", "clips")


def _scheduler(optimizer, settings: TrainSettings, steps_per_epoch: int):
    """The rate schedule and whether it steps per batch (else per epoch)."""
    if settings.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=settings.lr_decay), False
    total = max(1, settings.epochs * steps_per_epoch)
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if settings.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=total), True
    raise ValueError(f"schedule={settings.schedule!r} is not one of {SCHEDULES}")


def _mixed(
    x: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A batch blended with a shuffle of itself: inputs, the shuffled labels, the weight.

    The weight of ``x`` is drawn from Beta(alpha, alpha) and the shuffle from torch's
    generator, which checkpoints keep: a resumed run blends as the unstopped one did.
    """
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(y)).to(y.device)
    return weight * x + (1 - weight) * x[order], y[order], weight


class StartPrior:
    """L2-SP's penalty: ``strength / 2 * sum (w - w_start)^2`` over ``model``'s trained weights.

    The start is taken at construction, before a checkpoint is loaded: a resumed run is
    pulled toward the same start as the unstopped one.
    """

    def __init__(self, model: nn.Module, strength: float):
        self.strength = strength
        self.pairs = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def __call__(self) -> torch.Tensor:
        """The penalty of the weights as they are now (a graph to backpropagate)."""
        return self.strength / 2 * sum(((p - start) ** 2).sum() for p, start in self.pairs)


def _n_clips(dataset: Dataset) -> int:
    """The clips ``dataset``'s items come from (its ``owner``), else its items."""
    owner = getattr(dataset, "owner", None)
    return max(1, len(np.unique(owner)) if owner is not None else len(dataset))


def _epoch(
    model,
    loader,
    loss_fn,
    device,
    where: str,
    optimizer=None,
    per_step=None,
    keep=False,
    mixup: float = 0.0,
    prior: StartPrior | None = None,
) -> tuple[float, float, np.ndarray | None]:
    """One pass over ``loader``: mean loss, accuracy, and (``keep``) every item's softmax.

    ``mixup`` > 0 (training only): each batch is blended with a shuffle of itself
    (:func:`_mixed`), the loss is the same blend of both labels' losses, and an item
    counts as right when the model names its larger share's label. ``prior`` (training
    only): its penalty is added to what is minimised, not to the loss reported.
    """
    training = optimizer is not None
    model.train(training)
    total_loss, correct, seen, kept = 0.0, 0, 0, []
    with torch.set_grad_enabled(training):
        for batch, (x, y) in enumerate(loader, 1):
            _check_finite_input(x, f"{where}, batch {batch}")
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            other, weight = y, 1.0
            if training and mixup > 0:
                x, other, weight = _mixed(x, y, mixup)
            with _autocast(device):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
                if weight < 1.0:
                    loss = weight * loss + (1 - weight) * loss_fn(logits.float(), other)
            if training:
                optimizer.zero_grad(set_to_none=True)
                (loss + prior() if prior is not None else loss).backward()
                optimizer.step()
                if per_step is not None:
                    per_step.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == (y if weight >= 0.5 else other)).sum())
            seen += len(y)
            if keep:
                kept.append(torch.softmax(logits.detach().float(), 1).cpu().numpy())
    probs = np.concatenate(kept) if kept else None
    return total_loss / max(seen, 1), correct / max(seen, 1), probs


def clip_accuracy(probs: np.ndarray, dataset: Dataset) -> float:
    """Accuracy of the clips of ``dataset`` (its ``owner`` and ``labels``), items averaged."""
    labels = np.asarray(dataset.labels)
    scores, seen = clip_means(probs, dataset.owner, len(labels))
    return float((scores[seen].argmax(1) == labels[seen]).mean()) if seen.any() else 0.0


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


def _dataset_rngs(*datasets: Dataset | None) -> list[np.random.Generator | None]:
    """The numpy Generator each dataset augments with (``dataset.rng``), None where none."""
    rngs = []
    for dataset in datasets:
        while dataset is not None and not hasattr(dataset, "rng") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset  # a Subset: its dataset draws
        rng = getattr(dataset, "rng", None)
        rngs.append(rng if isinstance(rng, np.random.Generator) else None)
    return rngs


def _rng_states(loader: DataLoader, rngs, device: torch.device) -> dict:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "loader": loader.generator.get_state(),
        "datasets": [None if rng is None else rng.bit_generator.state for rng in rngs],
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict, loader: DataLoader, rngs, device: torch.device) -> None:
    random.setstate(states["python"])
    name, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    loader.generator.set_state(states["loader"])
    for rng, state in zip(rngs, states["datasets"], strict=True):
        if rng is not None:
            rng.bit_generator.state = state
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def _check_finite_input(x: torch.Tensor, where: str) -> None:
    # A NaN input gives a NaN loss too, which would blame the learning rate; say what it is.
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise TrainingError(
            f"{where}: the input holds {bad} NaN or infinite values of {x.numel()}; "
            "training stopped, no weights of this epoch kept"
        )


def _check_finite(loss: float, what: str, epoch: int, name: str) -> None:
    if not math.isfinite(loss):
        who = f"{name}: " if name else ""
        raise TrainingError(
            f"{who}epoch {epoch}: the {what} loss is {loss} on finite inputs (a learning "
            "rate too high?); training stopped, no weights of this epoch kept"
        )


def _load_checkpoint(path: Path, signature: dict, log) -> dict | None:
    """The checkpoint at ``path`` if it exists and was written by the same training."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        log(f"checkpoint {path}: unreadable ({exc}); training from epoch 1")
        return None
    if state.get("signature") != signature:
        log(f"checkpoint {path}: from other settings, data or model; training from epoch 1")
        return None
    return state


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    settings: TrainSettings,
    n_classes: int,
    device: torch.device,
    train_labels: Sequence[int] | None = None,
    log=print,
    checkpoint: str | Path | None = None,
    name: str = "",
) -> History:
    """Train the parameters of ``model`` that require grad; keep the best epoch's weights.

    The best epoch has the highest validation accuracy (ties: lower validation loss);
    with ``settings.validate_on == "clips"``, the highest accuracy of the validation
    clips first (``val_set.owner`` and ``val_set.labels``: each item's clip, each clip's
    label; its items' probabilities averaged). With no validation set, the lowest
    training loss. Training stops after
    ``settings.patience`` epochs without a better one. A training or validation loss
    that is NaN or infinite raises ``TrainingError`` naming the epoch (and ``name``); so
    does a batch whose input holds NaN or infinity, naming the set and the batch.

    With ``checkpoint``, a path outside the job's outputs, the whole state of training
    (model, optimiser, scheduler, best weights, history and every random generator:
    Python's, numpy's, torch's, the shuffling loader's and the datasets' ``rng``) is
    written there atomically after every epoch. A later call with the same settings,
    data sizes and model resumes from the epoch after the last one written, with the
    same result as a run never stopped (same device); the file is deleted when training
    ends. A checkpoint of other settings is ignored and overwritten.
    """
    if settings.validate_on not in VALIDATE_ON:
        raise ValueError(f"validate_on={settings.validate_on!r} is not one of {VALIDATE_ON}")
    has_val = val_set is not None and len(val_set) > 0
    by_clip = has_val and settings.validate_on == "clips"
    if by_clip and not (hasattr(val_set, "owner") and hasattr(val_set, "labels")):
        raise ValueError("validate_on='clips' needs a validation set with owner and labels")
    seed_everything(settings.seed)
    model.to(device)
    prior = StartPrior(model, settings.l2_sp / _n_clips(train_set)) if settings.l2_sp else None
    params = param_groups(model, settings)
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    elif settings.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        raise ValueError(f"optimizer={settings.optimizer!r} is not 'sgd' or 'adam'")
    weight = None
    if settings.class_weighted:
        if train_labels is None:
            raise ValueError("class_weighted training needs train_labels")
        weight = class_weights(train_labels, n_classes).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    workers = settings.loader_workers
    train_loader = _loader(train_set, settings.batch_size, True, settings.seed, device, workers)
    scheduler, stepwise = _scheduler(optimizer, settings, len(train_loader))
    val_loader = (
        _loader(val_set, settings.batch_size, False, 0, device, workers) if has_val else None
    )
    history = History()
    best_key, best_state, waited = None, None, 0
    rngs = _dataset_rngs(train_set, val_set)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        signature = {
            "settings": asdict(settings),
            "n_classes": n_classes,
            "items": [len(train_set), len(val_set) if has_val else 0],
            "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        state = _load_checkpoint(checkpoint, signature, log)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = History(**state["history"])
            best_key, best_state = tuple(state["best_key"]), state["best_state"]
            waited = state["waited"]
            _set_rng_states(state["rng"], train_loader, rngs, device)
            log(f"checkpoint {checkpoint}: resuming after epoch {len(history.epochs)}")
    first = settings.epochs + 1 if history.stopped_early else len(history.epochs) + 1
    for epoch in range(first, settings.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        where = f"{name}: epoch {epoch}" if name else f"epoch {epoch}"
        train_loss, train_acc, _ = _epoch(
            model,
            train_loader,
            loss_fn,
            device,
            f"{where}: training set",
            optimizer,
            scheduler if stepwise else None,
            mixup=settings.mixup,
            prior=prior,
        )
        _check_finite(train_loss, "training", epoch, name)
        if not stepwise:
            scheduler.step()
        row = dict(epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc)
        if has_val:
            val_loss, val_acc, val_probs = _epoch(
                model,
                val_loader,
                nn.CrossEntropyLoss(),
                device,
                f"{where}: validation set",
                keep=by_clip,
            )
            _check_finite(val_loss, "validation", epoch, name)
            row.update(val_loss=val_loss, val_acc=val_acc)
            key = (val_acc, -val_loss)
            if by_clip:
                row["val_clip_acc"] = clip_accuracy(val_probs, val_set)
                key = (row["val_clip_acc"], *key)
        else:
            key = (-train_loss,)
        row["seconds"] = time.perf_counter() - start
        history.epochs.append(row)
        line = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
        )
        if epoch < settings.epochs:  # at most this many are left: early stopping may end sooner
            left = settings.epochs - epoch
            line += f" | at most {left} epochs left, ETA {duration(left * row['seconds'])}"
        log(line)
        if best_key is None or key > best_key:
            best_key, best_state, waited = key, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            waited += 1
            history.stopped_early = waited >= settings.patience
        if checkpoint is not None:
            with cache.atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "signature": signature,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "history": asdict(history),
                        "best_key": list(best_key),
                        "best_state": best_state,
                        "waited": waited,
                        "rng": _rng_states(train_loader, rngs, device),
                    },
                    tmp,
                )
        if history.stopped_early:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
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
