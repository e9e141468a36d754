"""VGG-19 for the audio branch: spectrogram images -> 4096-d fc7 features.

The layers are torchvision's ``vgg19`` at torchvision's indices, so ImageNet state
dicts load; only the convolution stack is called ``convs`` here (``features`` in the
file), because ``features()`` is the method every model of this package has for its
feature layer. The last classifier layer has ``num_classes`` outputs. With
``fc_width`` below 4096 (the CPU preset) the classifier layers are narrower than the
file's, and :func:`msff.models.weights.load_torchvision` loads the convolutions only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from msff.models.build import Built, finish, rgb_input
from msff.models.weights import IMAGENET_PREPROCESS, init_vgg_style, load_torchvision


class VGG19(nn.Module):
    """VGG-19 (no batch norm) with a ``num_classes`` classifier.

    Parameters
    ----------
    num_classes : outputs of ``classifier[6]``.
    fc_width : width of ``classifier[0]`` and ``classifier[3]`` (fc6, fc7); 4096 in the paper.
    dropout : dropout after fc6 and fc7.
    width : multiplier of every conv layer's channels; 1.0 in the paper (the CPU preset
        narrows it; a narrowed VGG-19 cannot take ImageNet weights).
    batch_norm : torchvision's ``vgg19_bn`` layout (a batch norm after every conv), for
        training from scratch, where plain VGG-19 barely moves; the CPU preset turns it on.
    """

    preprocess = IMAGENET_PREPROCESS

    def __init__(
        self,
        num_classes: int = 7,
        fc_width: int = 4096,
        dropout: float = 0.5,
        width: float = 1.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.fc_width = fc_width
        # "E" is VGG-19 in torchvision: channel counts and "M" (max-pool) markers.
        layout = [v if v == "M" else max(1, round(v * width)) for v in cfgs["E"]]
        self.convs = make_layers(layout, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(layout[-2] * 7 * 7, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )
        init_vgg_style(self)

    def convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 activations ``(B, 512, H/32, W/32)`` of images ``(B, 3, H, W)``."""
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
) -> Built:
    """VGG-19 on spectrogram images; ``prepare`` takes (N, H, W) uint8 grey images."""
    model = VGG19(num_classes, fc_width, width=width, batch_norm=batch_norm)
    loaded = load_torchvision(model, weights, "vgg19")
    line, pretrained = finish(model, loaded, "vgg19")
    rgb = rgb_input(model.preprocess.normalize, input_size)
    return Built(model, lambda images: rgb(np.repeat(images[..., None], 3, -1)), line, pretrained)
