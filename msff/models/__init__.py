"""The networks of the method, as plain ``nn.Module``s, and the loaders of their weights.

Every CNN takes ``num_classes`` and ``fc_width`` (4096 in the paper; the CPU preset
narrows it) and has ``features(x)`` (the ``(B, fc_width)`` activations the paper feeds
to the BLSTM), ``forward(x)`` (class logits) and a ``preprocess`` attribute: the input
size and normalisation its pretrained weights expect. The models know no files; the
loaders in :mod:`msff.models.weights` put pretrained weights into them, and each
architecture module's ``build`` returns a model ready to train (:mod:`msff.models.build`).

Names are imported lazily (PEP 562): importing one architecture module, as each
workflow rule does, does not import the others, so editing ``c3d.py`` concerns C3D's
rules only (see :mod:`msff.codedeps`).
"""

from importlib import import_module

_WHERE = {
    "BLSTM": "blstm",
    "C3D": "c3d",
    "ResNet50": "resnet",
    "VGG19": "vgg19",
    "VGGFace": "vgg_face",
    "Fer2013Net": "fer2013",
    "Built": "build",
    "freeze_conv": "build",
    **{
        name: "weights"
        for name in (
            "C3D_PREPROCESS",
            "IMAGENET_PREPROCESS",
            "VGG_FACE_PREPROCESS",
            "Loaded",
            "Preprocess",
            "load_c3d",
            "load_torchvision",
            "load_vgg_face",
        )
    },
}
# The CNNs by the names the weight files use for them (a module each).
_BACKBONES = {"vgg_face": "VGGFace", "resnet50": "ResNet50", "vgg19": "VGG19", "c3d": "C3D"}


def __getattr__(name: str):
    if name == "BACKBONES":
        return {key: __getattr__(cls) for key, cls in _BACKBONES.items()}
    if name in _WHERE:
        return getattr(import_module(f"msff.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'msff.models' has no attribute {name!r}")


__all__ = sorted([*_WHERE, "BACKBONES"])
