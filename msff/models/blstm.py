"""The bidirectional LSTM the paper puts over windows of per-frame CNN features."""

from __future__ import annotations

import math

import torch
from torch import nn


class BLSTM(nn.Module):
    """Bidirectional LSTM over ``(B, T, input_dim)`` windows (T = 8 in the paper) -> logits.

    The classifier reads the final hidden state of each direction of the last layer: the
    forward state after the last frame and the backward state after the first, so each
    half has read the whole window. (``output[:, -1]`` would give the backward direction
    one frame only.) A mean over time would also average in the forward states of the
    first frames and the backward states of the last, which have read little of it.

    Parameters
    ----------
    input_dim : width of the per-frame features (4096 for fc7 / fc6 features).
    hidden : hidden units per direction.
    layers : stacked LSTM layers.
    num_classes : outputs.
    dropout : between LSTM layers and before the classifier.
    prior : the last ``prior`` input columns are class log-probabilities of each frame
        (a frame CNN whose head starts from its backbone's classifier,
        :class:`msff.models.fer2013.Fer2013Net`); the logits are their mean over the
        window plus the classifier's, which starts at zero: training starts from them.
    """

    def __init__(
        self,
        input_dim: int = 4096,
        hidden: int = 256,
        layers: int = 2,
        num_classes: int = 7,
        dropout: float = 0.5,
        prior: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.lstm = nn.LSTM(
            input_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,  # torch warns on dropout after the last
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)
        self.prior = prior
        if prior:
            if prior != num_classes:
                raise ValueError(f"{prior} prior columns for {num_classes} classes")
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of feature windows ``(B, T, input_dim)``."""
        _, (h, _) = self.lstm(x)
        # h is (layers * 2, B, hidden): the last layer's forward, then backward state.
        last = torch.cat([h[-2], h[-1]], dim=1)
        logits = self.fc(self.dropout(last))
        if self.prior:
            logits = logits + x[:, :, -self.prior :].mean(1)
        return logits


class BLSTMEnsemble(nn.Module):
    """BLSTMs of the same shape, trained apart (other seeds): their mean probability.

    ``forward`` returns the log of the members' mean softmax, so a softmax of it (what
    every caller of a :class:`BLSTM` takes) is that mean. A BLSTM on a few thousand
    windows lands in a different place with every seed (RAVDESS: 4-10 test points between
    the best and the worst of five seeds on the same features); the mean of a few is
    steadier and better than a typical one.
    """

    def __init__(self, members: list[BLSTM]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble of no BLSTM")
        self.members = nn.ModuleList(members)
        self.num_classes = members[0].num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log mean class probabilities ``(B, num_classes)`` of windows ``(B, T, input_dim)``."""
        logs = torch.stack([torch.log_softmax(m(x), 1) for m in self.members])
        return torch.logsumexp(logs, 0) - math.log(len(self.members))
