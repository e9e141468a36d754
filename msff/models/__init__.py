"""The networks of the method, as plain ``nn.Module``s, and the loaders of their weights.

Every CNN takes ``num_classes`` and ``fc_width`` (4096 in the paper; the CPU preset
narrows it) and has ``features(x)`` (the ``(B, fc_width)`` activations the paper feeds
to the BLSTM), ``forward(x)`` (class logits) and a ``preprocess`` attribute: the input
size and normalisation its pretrained weights expect. The models know no files; the
loaders in :mod:`msff.models.weights` put pretrained weights into them.
"""

from torch import nn

from msff.models.blstm import BLSTM
from msff.models.c3d import C3D
from msff.models.resnet import ResNet50
from msff.models.vgg19 import VGG19
from msff.models.vgg_face import VGGFace
from msff.models.weights import (
    C3D_PREPROCESS,
    IMAGENET_PREPROCESS,
    VGG_FACE_PREPROCESS,
    Loaded,
    Preprocess,
    load_c3d,
    load_torchvision,
    load_vgg_face,
)

# The CNNs by the names the workflow uses for them.
BACKBONES: dict[str, type[nn.Module]] = {
    "vgg_face": VGGFace,
    "resnet50": ResNet50,
    "vgg19": VGG19,
    "c3d": C3D,
}


def freeze_conv(model: nn.Module) -> tuple[str, ...]:
    """Freeze every parameter outside the fully connected layers of a CNN.

    The paper fine-tunes only the fully connected layers of its pretrained CNNs
    (VGG-Face fc6-fc8, the ResNet-50 head, C3D fc6-fc8) and keeps the convolutions
    as they were trained. Frozen batch norms of :class:`ResNet50` also keep their
    running statistics in training mode.

    Returns
    -------
    tuple of str
        The names of the parameters left trainable, for the training log.
    """
    head = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    # Re-apply the current mode: ResNet50.train() puts the now frozen batch norms in eval.
    model.train(model.training)
    return tuple(name for name, p in model.named_parameters() if p.requires_grad)


__all__ = [
    "BACKBONES",
    "BLSTM",
    "C3D",
    "C3D_PREPROCESS",
    "IMAGENET_PREPROCESS",
    "Loaded",
    "Preprocess",
    "ResNet50",
    "VGG19",
    "VGGFace",
    "VGG_FACE_PREPROCESS",
    "freeze_conv",
    "load_c3d",
    "load_torchvision",
    "load_vgg_face",
]
