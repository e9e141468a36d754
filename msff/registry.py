"""The one place a model is named: what it is, what it needs, which files it writes.

Everything that lists models reads this: the workflow's rules and targets
(``workflow/rules/common.smk``), the config schema's enums (:func:`msff.config.schema`),
fusion, evaluation, class weighting, cross-validation and ``predict``. Adding a frame
backbone is one line in :data:`FRAME_BACKBONES` plus its module: an ``nn.Module`` and a
``build(num_classes, fc_width, weights, **options)`` beside it (see
:mod:`msff.models.fer2013`). It then gets the frame CNN and the BLSTM over its features.
A backbone whose own classifier predicts emotions names them in its module's ``CLASSES``
and takes ``prior_classes`` (config ``frame_head_start: zeroshot``: heads start from it).

Nothing here imports torch: the workflow reads it when it parses the Snakefile.
"""

from __future__ import annotations

from dataclasses import dataclass

# Frame backbones of the face branch: name -> the module holding its nn.Module and build().
FRAME_BACKBONES: dict[str, str] = {
    "fer2013": "msff.models.fer2013",
    "vgg_face": "msff.models.vgg_face",
    "resnet50": "msff.models.resnet",
}

FACES, SPECTROGRAMS, OPENSMILE = "faces", "spectrograms", "opensmile"


@dataclass(frozen=True)
class Model:
    """One model of the method, by the name of its scores file (``scores/{name}.tsv``).

    Attributes
    ----------
    name : the model's name in config (``fusion.models``), scores files and reports.
    head : the module under :mod:`msff.heads` that trains it and scores a clip with it.
    needs : the per-clip cache it reads: ``faces``, ``spectrograms`` or ``opensmile``.
    files : what it writes under ``results/models/`` and ``predict`` loads, in order.
    code : the msff modules whose source makes its scores: editing one reruns it.
    backbone : the frame backbone it stands on, if any.
    """

    name: str
    head: str
    needs: str
    files: tuple[str, ...]
    code: tuple[str, ...]
    backbone: str | None = None


def frame_models(backbone: str) -> list[Model]:
    """The frame CNN of a backbone (frame scores averaged) and the BLSTM over its features."""
    if backbone not in FRAME_BACKBONES:
        raise KeyError(f"frame backbone {backbone!r} is not one of {sorted(FRAME_BACKBONES)}")
    cnn = f"{backbone}_cnn.pt"
    code = ("msff.heads.frame_cnn", FRAME_BACKBONES[backbone])
    return [
        Model(f"{backbone}_frames", "frame_cnn", FACES, (cnn,), code, backbone),
        Model(
            f"{backbone}_blstm",
            "blstm",
            FACES,
            (cnn, f"{backbone}_blstm.pt"),
            (*code, "msff.heads.blstm"),
            backbone,
        ),
    ]


C3D = Model("c3d", "c3d", FACES, ("c3d.pt",), ("msff.heads.c3d",))
# FER2013's own classifier, untrained by the run: its seven classes are ours.
ZEROSHOT = Model(
    "fer2013_zeroshot",
    "zeroshot",
    FACES,
    ("fer2013_zeroshot.json",),
    ("msff.heads.zeroshot",),
    "fer2013",
)
AUDIO_CNN = Model(
    "vgg19_blstm_audio",
    "audio_cnn",
    SPECTROGRAMS,
    ("vgg19_audio_cnn.pt", "vgg19_blstm_audio.pt"),
    ("msff.heads.audio_cnn", "msff.heads.blstm"),
)
# HOG descriptors of the aligned faces + the SVM: the face branch's hand-crafted model.
HOG_SVM = Model("hog_svm", "hog_svm", FACES, ("hog_svm.h5",), ("msff.heads.hog_svm",))
SVM = Model("opensmile_svm", "svm", OPENSMILE, ("opensmile_svm.h5",), ("msff.heads.svm",))
# config ``models`` switch -> the model it turns on
SWITCHED = {
    "zeroshot": ZEROSHOT,
    "c3d": C3D,
    "hog_svm": HOG_SVM,
    "audio_cnn": AUDIO_CNN,
    "opensmile_svm": SVM,
}


def models(config_models: dict) -> list[Model]:
    """The models a config's ``models`` block turns on, in the order of every table."""
    out = [m for backbone in config_models["face_backbones"] for m in frame_models(backbone)]
    return out + [model for switch, model in SWITCHED.items() if config_models.get(switch)]


def every_model() -> list[Model]:
    """Every model any config can turn on (the config schema's enum of model names)."""
    return models({"face_backbones": list(FRAME_BACKBONES)} | dict.fromkeys(SWITCHED, True))


def model(name: str) -> Model:
    """The model of that name; KeyError naming the known ones when there is none."""
    for m in every_model():
        if m.name == name:
            return m
    raise KeyError(f"no model {name!r}; known: {[m.name for m in every_model()]}")
