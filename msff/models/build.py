"""What a builder returns: a network with its weights, its input preparation and its story.

Each architecture module has a ``build`` function beside its ``nn.Module`` (as
torchvision's ``vgg16(weights=...)`` sits beside ``VGG``): pretrained parts are loaded
from the file config names and, as the paper does, the convolutions are frozen; with no
file the network trains from scratch, all layers trainable (frozen random convolutions
would learn nothing). :class:`Built` carries the model, the function that turns cached
uint8 pixels into what its weights expect, and one line for reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msff.models.weights import Loaded

log = logging.getLogger("msff")


@dataclass
class Built:
    """A network ready to train: the model, its input preparation, and its provenance."""

    model: nn.Module
    prepare: Callable[[np.ndarray], torch.Tensor]
    weights: str  # one line for reports
    pretrained: bool


def freeze_conv(model: nn.Module) -> tuple[str, ...]:
    """Freeze every parameter outside the fully connected layers of a CNN.

    The paper fine-tunes only the fully connected layers of its pretrained CNNs
    (VGG-Face fc6-fc8, the ResNet-50 head, C3D fc6-fc8) and keeps the convolutions
    as they were trained. Frozen batch norms of the pretrained backbones (ResNet-50,
    FER2013) also keep their running statistics in training mode
    (:func:`hold_frozen_batch_norms`).

    Returns
    -------
    tuple of str
        The names of the parameters left trainable, for the training log.
    """
    head = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    # Re-apply the current mode: train() keeps the now frozen batch norms in eval.
    model.train(model.training)
    return tuple(name for name, p in model.named_parameters() if p.requires_grad)


def hold_frozen_batch_norms(model: nn.Module) -> None:
    """Put every batch norm whose weights are frozen in eval mode, in training too.

    A frozen batch norm keeps the running statistics it was pretrained with: batches of
    8 faces of one data set would otherwise drag them away from what the frozen layers
    after it expect (and the "frozen" backbone would change). Call it from ``train()``.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.weight.requires_grad:
            m.eval()


def unfreeze_last(model: nn.Module, k: int) -> list[str]:
    """Train the last ``k`` blocks of a pretrained backbone too (all of them when k is large).

    ``model.blocks_in_order()`` lists the backbone's blocks from input to output; their
    parameters become trainable and ``model.finetuned_parameters()`` returns them, so
    :func:`msff.train.param_groups` can give them their own learning rate. Returns the
    names of the parameters unfrozen, for the training log.
    """
    blocks = model.blocks_in_order()[::-1][: max(0, k)]
    ids = {id(p) for block in blocks for p in block.parameters()}
    names = []
    for name, p in model.named_parameters():
        if id(p) in ids:
            p.requires_grad_(True)
            names.append(name)
    model._finetuned = [p for p in model.parameters() if id(p) in ids]
    model.train(model.training)  # frozen batch norms stay in eval: refresh which are
    return names


def rgb_input(normalize, size: int | None = None):
    """Prepare (N, H, W, 3) uint8 faces for an RGB network: resize, normalise."""

    def prepare(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
        if size and x.shape[-1] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return normalize(x)

    return prepare


def finish(model: nn.Module, loaded: Loaded | None, name: str) -> tuple[str, bool]:
    """Freeze the convolutions of a pretrained model; the report line and whether pretrained."""
    if loaded is None or loaded.from_scratch:
        line = f"{name}: no weight file, trained from scratch (all layers)"
        log.warning(line)
        return line, False
    trainable = freeze_conv(model)
    line = f"{name}: {loaded.path}; {loaded.note}; trained: {', '.join(trainable)}".rstrip("; ")
    log.info(line)
    return line, True
