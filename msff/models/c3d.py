"""C3D (Tran et al., ICCV 2015): 3x3x3 convolutions over 16-frame clips of 112x112 faces.

Module names are those of the Sports-1M PyTorch conversion (``c3d.pickle``), so
:func:`msff.models.weights.load_c3d` maps the file onto this module key for key.

Two departures from that model, neither of which changes anything on its 16x112x112
input: the max-pools round up (``ceil_mode``, Caffe's rounding, which the original was
trained with; every size divides evenly at 16x112x112), and an adaptive average pool
after pool5 (the identity on its 1x4x4 output). Together they let the CPU preset feed
shorter, smaller clips, e.g. 8x56x56, where pool5 would otherwise get a single frame
and fail, and fc6 would get fewer than 8192 inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msff.models.build import Built, finish
from msff.models.weights import C3D_PREPROCESS, init_vgg_style, load_c3d

_CONVS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")


def _conv(c_in: int, c_out: int) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, kernel_size=3, stride=1, padding=1)


def _pool(kernel: tuple[int, int, int], padding: tuple[int, int, int] = (0, 0, 0)) -> nn.MaxPool3d:
    return nn.MaxPool3d(kernel, stride=kernel, padding=padding, ceil_mode=True)


class C3D(nn.Module):
    """C3D on clips ``(B, 3, T, H, W)``, 16x112x112 in the paper.

    Parameters
    ----------
    num_classes : outputs of fc8 (the Sports-1M model has 487).
    fc_width : width of fc6 and fc7; 4096 in the paper, smaller in the CPU preset.
    dropout : dropout after fc6 and fc7.
    width : multiplier of every conv layer's channels; 1.0 in the paper (the CPU preset
        narrows it; a narrowed C3D cannot take the Sports-1M weights).
    batch_norm : a batch norm after every conv (``bn1`` ... ``bn5b``). The paper's C3D has
        none, but it starts from Sports-1M weights; trained from scratch, eight plain conv
        layers barely move, so the CPU preset (which has no such weights) turns this on.
    """

    preprocess = C3D_PREPROCESS

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
        c64, c128, c256, c512 = (max(1, round(c * width)) for c in (64, 128, 256, 512))
        self.conv1 = _conv(3, c64)
        self.pool1 = _pool((1, 2, 2))  # keeps the early temporal signal, as in the paper
        self.conv2 = _conv(c64, c128)
        self.pool2 = _pool((2, 2, 2))
        self.conv3a = _conv(c128, c256)
        self.conv3b = _conv(c256, c256)
        self.pool3 = _pool((2, 2, 2))
        self.conv4a = _conv(c256, c512)
        self.conv4b = _conv(c512, c512)
        self.pool4 = _pool((2, 2, 2))
        self.conv5a = _conv(c512, c512)
        self.conv5b = _conv(c512, c512)
        # The conversion's padding turns the 7x7 of pool4 into 4x4, as Caffe's rounding did.
        self.pool5 = _pool((2, 2, 2), padding=(0, 1, 1))
        self.avgpool = nn.AdaptiveAvgPool3d((1, 4, 4))
        self.fc6 = nn.Linear(c512 * 4 * 4, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.norms = nn.ModuleDict(
            {f"bn{name[4:]}": nn.BatchNorm3d(getattr(self, name).out_channels) for name in _CONVS}
            if batch_norm
            else {}
        )
        init_vgg_style(self)

    def _conv_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, name)(x)
        norm = self.norms[f"bn{name[4:]}"] if len(self.norms) else None
        return F.relu(norm(x) if norm is not None else x)

    def convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 activations: ``(B, 512, 1, 4, 4)`` for 16x112x112 clips."""
        x = self.pool1(self._conv_relu("conv1", x))
        x = self.pool2(self._conv_relu("conv2", x))
        x = self.pool3(self._conv_relu("conv3b", self._conv_relu("conv3a", x)))
        x = self.pool4(self._conv_relu("conv4b", self._conv_relu("conv4a", x)))
        return self.pool5(self._conv_relu("conv5b", self._conv_relu("conv5a", x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations after ReLU, ``(B, fc_width)``."""
        x = torch.flatten(self.avgpool(self.convolutions(x)), 1)
        x = self.dropout(F.relu(self.fc6(x)))
        return F.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of clips ``(B, 3, T, H, W)``."""
        return self.fc8(self.dropout(self.features(x)))


def build(
    num_classes: int, fc_width: int, width: float, weights: str | None, batch_norm: bool = False
) -> Built:
    """C3D on face clips; ``prepare`` takes one (3, T, H, W) float 0-255 volume."""
    model = C3D(num_classes, fc_width, width=width, batch_norm=batch_norm)
    loaded = load_c3d(model, weights) if weights else None
    line, pretrained = finish(model, loaded, "c3d")
    return Built(model, lambda v: model.preprocess.normalize(v[None])[0], line, pretrained)
