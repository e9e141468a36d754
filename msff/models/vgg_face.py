"""VGG-Face: VGG-16 with the layer names of the Oxford model's PyTorch conversion.

The names (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``fc8``) are those of
``vgg_face_dag.pth``, so :func:`msff.models.weights.load_vgg_face` maps the file onto
this module key for key. The paper fine-tunes fc6-fc8 on faces with the convolutions
frozen and takes the 4096-d fc7 activations as the frame features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msff.models.build import Built, finish, rgb_input, unfreeze_last
from msff.models.weights import VGG_FACE_PREPROCESS, init_vgg_style, load_vgg_face

# VGG-16: (block, convolutions in it, their channels); a 2x2 max-pool ends each block.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


class VGGFace(nn.Module):
    """VGG-16 for faces.

    Parameters
    ----------
    num_classes : outputs of fc8 (the published model has 2622 identities).
    fc_width : width of fc6 and fc7; 4096 in the paper, smaller in the CPU preset.
    dropout : dropout after fc6 and fc7, as in VGG-16.
    """

    preprocess = VGG_FACE_PREPROCESS

    def __init__(self, num_classes: int = 7, fc_width: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.fc_width = fc_width
        self.blocks: list[tuple[str, ...]] = []
        channels = 3
        for block, n_convs, width in BLOCKS:
            names = tuple(f"conv{block}_{i}" for i in range(1, n_convs + 1))
            for name in names:
                self.add_module(name, nn.Conv2d(channels, width, kernel_size=3, padding=1))
                channels = width
            self.blocks.append(names)
        # Identity at 224x224 (pool5 is 7x7); lets the CPU preset feed smaller faces.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.fc6 = nn.Linear(512 * 7 * 7, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.dropout = nn.Dropout(dropout)
        init_vgg_style(self)

    def blocks_in_order(self) -> list[nn.Module]:
        """The 5 conv blocks, input to output."""
        return [nn.ModuleList(getattr(self, n) for n in names) for names in self.blocks]

    def finetuned_parameters(self) -> list[nn.Parameter]:
        """The conv parameters fine-tuned with the head (see ``build``'s train_blocks)."""
        return getattr(self, "_finetuned", [])

    def convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 activations ``(B, 512, H/32, W/32)`` of images ``(B, 3, H, W)``."""
        for names in self.blocks:
            for name in names:
                x = F.relu(getattr(self, name)(x))
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations after ReLU, ``(B, fc_width)``: the paper's frame features."""
        x = torch.flatten(self.avgpool(self.convolutions(x)), 1)
        x = self.dropout(F.relu(self.fc6(x)))
        return F.relu(self.fc7(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from ``features(x)``: one backbone pass serves features and scores."""
        return self.fc8(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, 3, H, W)``."""
        return self.classify(self.features(x))


def build(num_classes: int, fc_width: int, weights: str | None, train_blocks: int = 0) -> Built:
    """VGG-Face for frames: ``vgg_face_dag.pth`` loaded and conv frozen, else from scratch.

    With weights, the last ``train_blocks`` conv blocks train with the fc layers.
    """
    model = VGGFace(num_classes, fc_width)
    loaded = load_vgg_face(model, weights) if weights else None
    line, pretrained = finish(model, loaded, "vgg_face")
    if pretrained and train_blocks:
        line += f"; last {min(train_blocks, 5)} conv blocks trained too"
        unfreeze_last(model, train_blocks)
    return Built(model, rgb_input(model.preprocess.normalize), line, pretrained)
