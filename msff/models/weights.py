"""Pretrained weights: the preprocessing they expect, and the one place that loads them.

Every pretrained file the paper's models start from is a plain PyTorch state dict:

=========  ==========================  =======================  ========================
family     file                        classifier (outputs)     key layout
=========  ==========================  =======================  ========================
VGG-Face   ``vgg_face_dag.pth``        ``fc8`` (2622)           ``conv1_1`` ... ``fc8``
C3D        ``c3d.pickle`` (Sports-1M)  ``fc8`` (487)            ``conv1`` ... ``fc8``
ResNet-50  torchvision ImageNet        ``fc`` (1000)            torchvision's resnet50
VGG-19     torchvision ImageNet        ``classifier.6`` (1000)  torchvision's vgg19
=========  ==========================  =======================  ========================

A loader checks every key and shape of the file against the model before it copies
anything, so a wrong file fails with a message naming the first mismatch and leaves
the model as it was. The classifier is re-initialised unless the caller asks to keep
it; fully connected layers narrowed by ``fc_width`` (the CPU preset) keep their own
initialisation too, and the returned :class:`Loaded` says so for the run's report.
Nothing here downloads: ImageNet weights come from a path in config or from a file
already in the torch hub cache, else the model trains from scratch.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from msff.errors import WeightsError

log = logging.getLogger(__name__)

# The width of fc6 and fc7 in every published file (and in the paper).
PUBLISHED_FC_WIDTH = 4096


@dataclass(frozen=True)
class Preprocess:
    """How images were fed to a family of weights; every family takes RGB.

    Attributes
    ----------
    input_size : (H, W) of an image, or (T, H, W) of a clip.
    mean, std : per channel (R, G, B), in units where a white pixel is ``pixel_max``.
    pixel_max : 255.0 for the Caffe / MatConvNet conversions, 1.0 for torchvision.
    trained_on : the data set of the published weights.
    head_classes : outputs of the published classifier (identities, sports, ImageNet
        classes), which ours for the emotion classes replaces.
    """

    input_size: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_max: float
    trained_on: str
    head_classes: int

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """0-255 RGB pixels, channels on dim 1 (``(B, 3, H, W)`` or ``(B, 3, T, H, W)``).

        Returns the float tensor these weights expect; uint8 or float input.
        """
        shape = (1, 3) + (1,) * (pixels.dim() - 2)
        x = pixels.float() * (self.pixel_max / 255.0)
        mean = torch.tensor(self.mean, device=x.device).view(shape)
        std = torch.tensor(self.std, device=x.device).view(shape)
        return (x - mean) / std


# MatConvNet's vgg_face_dag meta (Albanie's conversion of Parkhi et al. 2015).
VGG_FACE_PREPROCESS = Preprocess(
    input_size=(224, 224),
    mean=(129.186279296875, 104.76238250732422, 93.59396362304688),
    std=(1.0, 1.0, 1.0),
    pixel_max=255.0,
    trained_on="VGG-Face (2622 identities)",
    head_classes=2622,
)
# The Caffe model subtracted a mean cube; the PyTorch conversion's own example feeds raw
# 0-255 RGB frames (resized to 112x200, centre crop 112), and so do we.
C3D_PREPROCESS = Preprocess(
    input_size=(16, 112, 112),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    pixel_max=255.0,
    trained_on="Sports-1M (487 sports)",
    head_classes=487,
)
IMAGENET_PREPROCESS = Preprocess(
    input_size=(224, 224),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    pixel_max=1.0,
    trained_on="ImageNet-1k",
    head_classes=1000,
)


def init_vgg_style(module: nn.Module) -> None:
    """Initialise as torchvision's VGG: He-normal convolutions, N(0, 0.01) linear layers.

    Biases start at zero. The layers a loader does not fill keep these values.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class Loaded:
    """What a loader did, for the log and the run's report.

    Attributes
    ----------
    path : the file read; None when there was none and the model trains from scratch.
    loaded_keys : the model's state-dict keys set from the file.
    skipped_keys : the model's keys that keep their own initialisation.
    note : one line for a report, e.g. why fc6 and fc7 were not loaded.
    """

    path: Path | None
    loaded_keys: tuple[str, ...]
    skipped_keys: tuple[str, ...]
    note: str

    @property
    def from_scratch(self) -> bool:
        """True when no weight file was read."""
        return self.path is None


@dataclass(frozen=True)
class _Layout:
    """How a family's file names the layers of our model."""

    classifier: str  # the layer whose outputs are the classes
    hidden: tuple[str, ...]  # the fully connected layers of width fc_width before it
    new: tuple[str, ...] = ()  # our layers that the file never has
    rename: tuple[str, str] = ("", "")  # (prefix in the file, prefix in the model)

    def to_model(self, key: str) -> str:
        old, new = self.rename
        return new + key[len(old) :] if old and key.startswith(old) else key

    def to_file(self, key: str) -> str:
        old, new = self.rename
        return old + key[len(new) :] if new and key.startswith(new) else key


_VGG_FACE = _Layout(classifier="fc8", hidden=("fc6", "fc7"))
_C3D = _Layout(classifier="fc8", hidden=("fc6", "fc7"))
# Our fc6 is the 4096-d head the paper adds on the pool; the file's fc is ImageNet's.
_RESNET50 = _Layout(classifier="fc", hidden=(), new=("fc6",))
# VGG19 keeps its convolutions in `convs`: its `features()` method returns fc7.
_VGG19 = _Layout(
    classifier="classifier.6",
    hidden=("classifier.0", "classifier.3"),
    rename=("features.", "convs."),
)
_TORCHVISION = {"resnet50": _RESNET50, "vgg19": _VGG19}
# File names torchvision gives its ImageNet weights in the hub cache, preferred first:
# resnet50 IMAGENET1K_V1 (as in the paper's time), its older upload, IMAGENET1K_V2.
HUB_FILES = {
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-19c8e357.pth", "resnet50-11ad3fa6.pth"),
    "vgg19": ("vgg19-dcbb9e9d.pth",),
}


def load_vgg_face(model: nn.Module, path: str | Path, keep_classifier: bool = False) -> Loaded:
    """Load ``vgg_face_dag.pth`` into a :class:`~msff.models.vgg_face.VGGFace`.

    Parameters
    ----------
    model : the model; changed in place.
    path : the weight file.
    keep_classifier : load fc8 too (then ``model.num_classes`` must be the file's 2622);
        by default fc8 keeps the model's initialisation, for the emotion classes.

    Returns
    -------
    Loaded
        What was loaded and what was not.

    Raises
    ------
    WeightsError
        The file is missing or unreadable, or a key or shape differs from the model's.
    ValueError
        ``keep_classifier`` with a ``num_classes`` other than the file's.
    """
    return _load(model, Path(path), _VGG_FACE, keep_classifier)


def load_c3d(model: nn.Module, path: str | Path, keep_classifier: bool = False) -> Loaded:
    """Load the Sports-1M ``c3d.pickle`` into a :class:`~msff.models.c3d.C3D`.

    Parameters and errors as :func:`load_vgg_face`; the file's fc8 has 487 outputs.
    """
    return _load(model, Path(path), _C3D, keep_classifier)


def load_torchvision(
    model: nn.Module, path: str | Path | None, arch: str, keep_classifier: bool = False
) -> Loaded:
    """Load torchvision ImageNet weights into a ResNet50 or VGG19 of this package.

    Parameters
    ----------
    model : a :class:`~msff.models.resnet.ResNet50` or :class:`~msff.models.vgg19.VGG19`.
    path : the weight file named in config; None looks in the torch hub cache
        (``torch.hub.get_dir()/checkpoints``) for the file torchvision would have
        downloaded. Nothing is downloaded: with no file the model trains from scratch,
        and the returned :class:`Loaded` says so.
    arch : ``"resnet50"`` or ``"vgg19"``.
    keep_classifier : as in :func:`load_vgg_face`; the file's classifier has 1000 outputs.

    Returns
    -------
    Loaded
        What was loaded; ``from_scratch`` when no file was found.

    Raises
    ------
    WeightsError
        A file that is named but missing, unreadable, or not of the model's layout.
    ValueError
        An unknown ``arch``, or ``keep_classifier`` with another ``num_classes``.
    """
    if arch not in _TORCHVISION:
        raise ValueError(f"arch={arch!r}: expected one of {', '.join(_TORCHVISION)}")
    if path is None:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        found = [cache / name for name in HUB_FILES[arch] if (cache / name).is_file()]
        if not found:
            note = f"no {arch} weights in config or in {cache}: trained from scratch"
            log.info(note)
            return Loaded(None, (), tuple(model.state_dict()), note)
        path = found[0]
    return _load(model, Path(path), _TORCHVISION[arch], keep_classifier)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses pickled objects (a whole model, an optimizer) and non-pickles.
        raise WeightsError(
            f"{path}: not a plain state dict of tensors (torch.load with weights_only=True "
            "refused it); save model.state_dict(), not the model"
        ) from e
    except (RuntimeError, EOFError) as e:
        # torch's messages run to a paragraph; their first sentence says what failed.
        reason = str(e).strip().split(". ")[0] or type(e).__name__
        raise WeightsError(f"{path}: damaged or not a PyTorch file ({reason})") from e
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def _load(model: nn.Module, path: Path, layout: _Layout, keep_classifier: bool) -> Loaded:
    file = {layout.to_model(k): v for k, v in _read(path).items()}
    own = model.state_dict()

    for key in file:
        if key not in own:
            raise WeightsError(f"{path}: {layout.to_file(key)} is in the file but not in the model")
    for key in own:
        # BatchNorm's batch counter is absent from older torchvision files; it is no weight.
        optional = key.endswith(".num_batches_tracked") or _layer(key) in layout.new
        if key not in file and not optional:
            raise WeightsError(f"{path}: {layout.to_file(key)} is in the model but not in the file")

    skip = set(layout.new)
    notes = [f"{', '.join(layout.new)} not in the file: initialised"] if layout.new else []
    if model.fc_width != PUBLISHED_FC_WIDTH and layout.hidden:
        skip.update(layout.hidden)
        notes.append(
            f"{', '.join(layout.hidden)} not loaded: fc_width={model.fc_width} here, "
            f"{PUBLISHED_FC_WIDTH} in the file"
        )
    file_classes = file[f"{layout.classifier}.weight"].shape[0]
    if not keep_classifier:
        skip.add(layout.classifier)
        notes.append(
            f"{layout.classifier} re-initialised for {model.num_classes} classes "
            f"({file_classes} in the file)"
        )
    elif file_classes != model.num_classes:
        raise ValueError(
            f"{path}: keep_classifier needs num_classes={file_classes} like the file's "
            f"{layout.classifier}, the model has num_classes={model.num_classes}"
        )

    take = [k for k in own if k in file and _layer(k) not in skip]
    for key in take:
        if file[key].shape != own[key].shape:
            raise WeightsError(
                f"{path}: {layout.to_file(key)} has shape {tuple(file[key].shape)} in the file, "
                f"{tuple(own[key].shape)} in the model"
            )
    model.load_state_dict({k: file[k] for k in take}, strict=False)
    loaded = Loaded(path, tuple(take), tuple(k for k in own if k not in take), "; ".join(notes))
    log.info("%s: loaded %d tensors; %s", path, len(take), loaded.note or "all of them")
    return loaded


def _layer(key: str) -> str:
    """``classifier.6.weight`` -> ``classifier.6``: the module a state-dict key belongs to."""
    return key.rsplit(".", 1)[0]
