"""ResNet-50 with a 4096-d fully connected head, so its features match VGG-Face's width.

The backbone is torchvision's ``resnet50`` under torchvision's own module names, so
ImageNet state dicts load key for key; the paper's 4096-d features need a layer that
torchvision does not have: ``fc6`` (2048 -> fc_width) on the pooled features, then
``fc`` to the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from msff.models.build import Built, finish, hold_frozen_batch_norms, rgb_input, unfreeze_last
from msff.models.weights import IMAGENET_PREPROCESS, load_torchvision


class ResNet50(nn.Module):
    """ResNet-50 -> fc6 (fc_width) -> fc (num_classes).

    Parameters
    ----------
    num_classes : outputs of ``fc``.
    fc_width : width of ``fc6``, the feature layer; 4096 in the paper.
    dropout : dropout between fc6 and fc.
    """

    preprocess = IMAGENET_PREPROCESS

    def __init__(self, num_classes: int = 7, fc_width: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.fc_width = fc_width
        net = resnet50(weights=None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool
        self.fc6 = nn.Linear(net.fc.in_features, fc_width)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(fc_width, num_classes)

    def blocks_in_order(self) -> list[nn.Module]:
        """The stem and the 4 residual stages, input to output."""
        stem = nn.ModuleList([self.conv1, self.bn1])
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def finetuned_parameters(self) -> list[nn.Parameter]:
        """The conv parameters fine-tuned with the head (see ``build``'s train_blocks)."""
        return getattr(self, "_finetuned", [])

    def convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 activations ``(B, 2048, H/32, W/32)`` of images ``(B, 3, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 activations after ReLU, ``(B, fc_width)``: the paper's frame features."""
        return F.relu(self.fc6(torch.flatten(self.avgpool(self.convolutions(x)), 1)))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from ``features(x)``: one backbone pass serves features and scores."""
        return self.fc(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, 3, H, W)``."""
        return self.classify(self.features(x))

    def train(self, mode: bool = True) -> ResNet50:
        """Set training mode; frozen batch norms stay in eval (their ImageNet statistics)."""
        super().train(mode)
        hold_frozen_batch_norms(self)
        return self


def build(num_classes: int, fc_width: int, weights: str | None, train_blocks: int = 0) -> Built:
    """ResNet-50 for frames: ImageNet weights and conv frozen, else from scratch.

    The weights come from the file config names, else from the torch hub cache. With
    weights, the last ``train_blocks`` stages train with the fc layers.
    """
    model = ResNet50(num_classes, fc_width)
    loaded = load_torchvision(model, weights, "resnet50")
    line, pretrained = finish(model, loaded, "resnet50")
    if pretrained and train_blocks:
        line += f"; last {min(train_blocks, 5)} stages trained too"
        unfreeze_last(model, train_blocks)
    return Built(model, rgb_input(model.preprocess.normalize), line, pretrained)
