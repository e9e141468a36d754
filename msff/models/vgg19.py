"""VGG-19 for the audio branch: spectrogram images -> 4096-d fc7 features.

The layers are torchvision's ``vgg19`` at torchvision's indices, so ImageNet state
dicts load; only the convolution stack is called ``convs`` here (``features`` in the
file), because ``features()`` is the method every model of this package has for its
feature layer. The last classifier layer has ``num_classes`` outputs. With
``fc_width`` below 4096 (the CPU preset) the classifier layers are narrower than the
file's, and :func:`msff.models.weights.load_torchvision` loads the convolutions only.

``layers`` picks the convolution stack: torchvision's ``"E"`` (VGG-19, the paper's) by
default, another of its configurations (``"A"`` VGG-11, ``"B"`` VGG-13, ``"D"`` VGG-16)
or a list of channel counts and ``"M"`` (max-pool) markers, for a shallower net of the
same family where the data cannot train 16 convolutions (the CPU preset). Only ``"E"``
at full width takes the ImageNet VGG-19 file.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from msff.models.build import Built, finish, rgb_input
from msff.models.weights import IMAGENET_PREPROCESS, init_vgg_style, load_torchvision

STANDARDISE = ("none", "image", "frequency")


class VGG19(nn.Module):
    """VGG-19 (no batch norm) with a ``num_classes`` classifier; other VGG layouts by ``layers``.

    Parameters
    ----------
    num_classes : outputs of ``classifier[6]``.
    fc_width : width of ``classifier[0]`` and ``classifier[3]`` (fc6, fc7); 4096 in the paper.
    dropout : dropout after fc6 and fc7.
    width : multiplier of every conv layer's channels; 1.0 in the paper (the CPU preset
        narrows it; a narrowed VGG-19 cannot take ImageNet weights).
    batch_norm : torchvision's ``vgg19_bn`` layout (a batch norm after every conv), for
        training from scratch, where plain VGG-19 barely moves; the CPU preset turns it on.
    layers : ``"E"`` (VGG-19), another torchvision configuration letter, or a list of
        channel counts (before ``width``) and ``"M"`` max-pools.
    pool : side of the adaptive average pool before fc6: 7 in VGG (fc6 sees a 7x7 grid);
        1 is a global average, for small inputs where 7x7 would only repeat pixels.
    """

    preprocess = IMAGENET_PREPROCESS

    def __init__(
        self,
        num_classes: int = 7,
        fc_width: int = 4096,
        dropout: float = 0.5,
        width: float = 1.0,
        batch_norm: bool = False,
        layers: str | list = "E",
        pool: int = 7,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.fc_width = fc_width
        # torchvision's configurations: channel counts and "M" (max-pool) markers.
        if isinstance(layers, str) and layers not in cfgs:
            raise ValueError(f"layers={layers!r} is not one of torchvision's VGG {sorted(cfgs)}")
        chosen = cfgs[layers] if isinstance(layers, str) else layers
        layout = [v if v == "M" else max(1, round(v * width)) for v in chosen]
        channels = [v for v in layout if v != "M"]
        if not channels:
            raise ValueError(f"layers={layers!r} holds no convolution")
        self.convs = make_layers(layout, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels[-1] * pool * pool, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )
        init_vgg_style(self)

    def convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """The last pool's activations (``(B, 512, H/32, W/32)`` for VGG-19) of ``(B, 3, H, W)``."""
        return self.convs(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations after ReLU, ``(B, fc_width)``."""
        return self.classifier[:5](torch.flatten(self.avgpool(self.convs(x)), 1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of fc7 ``features``."""
        return self.classifier[5:](features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, 3, H, W)``."""
        return self.classify(self.features(x))


def build(
    num_classes: int,
    fc_width: int,
    width: float,
    weights: str | None,
    input_size: int,
    batch_norm: bool = False,
    layers: str | list = "E",
    pool: int = 7,
    standardise: str = "none",
    dropout: float = 0.5,
) -> Built:
    """A VGG on spectrogram images; ``prepare`` takes (N, H, W) uint8 grey images.

    ``standardise``: ``none`` feeds the grey image as ImageNet RGB (what the ImageNet
    weights expect, the paper's); ``image`` scales each image to zero mean and unit
    variance, ``frequency`` each of its rows (frequencies) over time, so a loud and a
    soft speaker, or a near and a far microphone, give the network the same pattern.
    ``dropout``: after fc6 and fc7 (VGG's 0.5).
    """
    if standardise not in STANDARDISE:
        raise ValueError(f"standardise={standardise!r} is not one of {STANDARDISE}")
    model = VGG19(
        num_classes,
        fc_width,
        dropout=dropout,
        width=width,
        batch_norm=batch_norm,
        layers=layers,
        pool=pool,
    )
    loaded = load_torchvision(model, weights, "vgg19")
    line, pretrained = finish(model, loaded, "vgg19")
    if standardise == "none":
        rgb = rgb_input(model.preprocess.normalize, input_size)
        return Built(
            model, lambda images: rgb(np.repeat(images[..., None], 3, -1)), line, pretrained
        )
    return Built(model, standardised_input(standardise, input_size), line, pretrained)


def standardised_input(standardise: str, size: int):
    """Prepare (N, H, W) uint8 images: resize to ``size``, standardise, three equal channels."""
    axes = (2, 3) if standardise == "image" else (3,)

    def prepare(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        # +1 grey level: a black image (or row) stays 0 instead of dividing by zero.
        x = (x - x.mean(axes, keepdim=True)) / (x.std(axes, keepdim=True) + 1.0)
        return x.expand(-1, 3, -1, -1)

    return prepare
