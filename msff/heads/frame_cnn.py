"""The frame CNN of the face branch: fine-tuned on face frames, then the features it gives.

finetune_cnn   a backbone of :data:`msff.registry.FRAME_BACKBONES` trained on the face
               frames of the training clips; then one pass over every found face writes
               the frame-only baseline scores (the mean of a clip's frame scores) and the
               fc7 features file (:mod:`msff.cache` layout), the BLSTM's input
cnn_features   the features file of a saved frame CNN, without training (benches, re-use)
infer          one clip's faces -> (fc7 features, frame class probabilities), one pass
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msff import registry
from msff.datasets import FaceFrames, centre_crop, found_rows
from msff.devices import pick_device
from msff.errors import ConfigError
from msff.heads import common
from msff.models.build import Built
from msff.train import TrainSettings


def build(
    backbone: str,
    num_classes: int,
    fc_width: int,
    weights: str | None,
    train_blocks: int = 0,
    prior_classes: list[str] | None = None,
) -> Built:
    """A frame backbone by its registry name, built by its module's ``build``.

    ``prior_classes``: the head starts from the backbone's own classifier where it has
    one (its module's ``CLASSES``: FER2013); other backbones' heads start at random.
    """
    if backbone not in registry.FRAME_BACKBONES:
        raise ConfigError(
            f"frame backbone {backbone!r} is not one of {sorted(registry.FRAME_BACKBONES)}"
        )
    module = import_module(registry.FRAME_BACKBONES[backbone])
    start = {"prior_classes": prior_classes} if prior_classes and hasattr(module, "CLASSES") else {}
    return module.build(num_classes, fc_width, weights, train_blocks=train_blocks, **start)


class TestViews(nn.Module):
    """Test-time views of each face: its mirror (``flip``) and shifted copies (``shift``).

    Faces are symmetric enough that the mirror image is another view of the same
    expression, and training moved every face by a few pixels (:func:`augment_faces`):
    averaging views smooths out what one crop gets wrong. ``features`` (the BLSTM's input)
    averages the face and its mirror only: views that also average the shifts make the
    training sequences too alike (CK+: BLSTM -1.5 to -3.4 points, bench/README.md). The
    scores come from the features averaged over every view: the face shifted by ``shift``
    of its side up, down, left and right (edges repeated), each mirrored too where
    ``flip``. One backbone pass a view; :meth:`scored_features` gives both averages.
    """

    def __init__(self, model: nn.Module, flip: bool, shift: float = 0.0):
        super().__init__()
        self.model, self.flip, self.shift = model, flip, shift
        self.fc_width, self.num_classes = model.fc_width, model.num_classes

    def _features_with_mirror(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``x`` and, where ``flip``, of ``x`` mirrored left to right."""
        return [self.model.features(v) for v in ([x, x.flip(-1)] if self.flip else [x])]

    def _shifted(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` moved by ``shift`` of its side up, down, left and right (none at 0 px)."""
        px = round(self.shift * x.shape[-1])
        if not px:
            return []
        padded = F.pad(x, (px, px, px, px), mode="replicate")
        h, w = x.shape[-2:]
        moves = ((px, 0), (-px, 0), (0, px), (0, -px))
        return [padded[..., px + dy : px + dy + h, px + dx : px + dx + w] for dy, dx in moves]

    def scored_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features: mean over ``x`` and its mirror, mean over every view: to classify)."""
        centre = self._features_with_mirror(x)
        views = centre + [f for v in self._shifted(x) for f in self._features_with_mirror(v)]
        return sum(centre) / len(centre), sum(views) / len(views)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the features of ``x`` and, where ``flip``, of its mirror."""
        centre = self._features_with_mirror(x)
        return sum(centre) / len(centre)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits of (averaged) features."""
        return self.model.classify(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the features averaged over every view."""
        return self.classify(self.scored_features(x)[1])


def scorer(model: nn.Module, flip_test: bool, shift_test: float = 0.0) -> nn.Module:
    """The network that scores faces at test time: as trained, or over several views."""
    return TestViews(model, flip_test, shift_test) if flip_test or shift_test else model


def finetune_cnn(
    backbone: str,
    clips: list[dict],
    faces_h5: dict[str, str],
    out_model: str,
    out_provenance: str,
    out_scores: str,
    classes: list[str],
    settings: TrainSettings | dict,
    fc_width: int,
    crop: int,
    max_train_frames: int | None,
    weights: str | None,
    train_blocks: int = 0,
    flip_test: bool = False,
    shift_test: float = 0.0,
    head_start: str = "random",
    device: str = "auto",
    config: dict | None = None,
    checkpoint: str | Path | None = None,
    out_features: str | None = None,
) -> None:
    """Fine-tune a frame CNN on the face frames of the training clips.

    ``train_blocks``: the last blocks of a pretrained backbone that train with the fc
    layers (0: the fc layers only, as the paper), at ``settings.backbone_lr``.
    ``flip_test``: test-time scores and features averaged over each face and its mirror.
    ``shift_test``: the scores (not the features) also over the face shifted by this
    fraction of its side up, down, left and right (:class:`TestViews`).
    ``head_start``: ``random`` (the paper's fresh fc layers) or ``zeroshot``: where the
    backbone's own classifier predicts our classes (FER2013), the head learns a correction
    to its scores and starts at them (:class:`msff.models.fer2013.Fer2013Net`).
    ``out_features``: where the fc7 features of every found face go, computed in the same
    pass as the frame scores (the backbone runs once over every face, not once for the
    scores and again for the features).
    """
    settings = common.as_settings(settings)
    started, dev = time.time(), pick_device(device)
    torch.manual_seed(settings.seed)  # the new fc layers' initial weights, too
    prior = classes if head_start == "zeroshot" else None
    built = build(backbone, len(classes), fc_width, weights, train_blocks, prior)
    labels = common.labels(clips, classes)
    paths = [faces_h5.get(c["clip"], "") for c in clips]

    def frames(idx, train, limit):
        return FaceFrames(
            [paths[i] for i in idx],
            [labels[i] for i in idx],
            crop,
            built.prepare,
            train,
            settings.seed,
            limit,
        )

    train_idx = [i for i in common.subset(clips, "train") if paths[i]]
    val_idx = [i for i in common.subset(clips, "val") if paths[i]]
    history = common.fit_head(
        built.model,
        frames(train_idx, settings.augment, max_train_frames),
        frames(val_idx, False, max_train_frames),
        settings,
        len(classes),
        dev,
        checkpoint,
        f"{backbone}_cnn",
    )
    meta = dict(
        backbone=backbone,
        fc_width=fc_width,
        crop=crop,
        classes=classes,
        weights=built.weights,
        pretrained=built.pretrained,
        flip_test=flip_test,
        shift_test=shift_test,
        # Columns after fc7 in the features: the backbone's log-probabilities of the classes.
        prior_classes=built.model.fc_width - fc_width,
    )
    model = scorer(built.model, flip_test, shift_test)
    probs, counts = [], []

    def scored_features(clip: dict) -> np.ndarray:
        """The clip's fc7 features; its frame probabilities, from them, kept on the way."""
        batches = face_batches(faces_h5.get(clip["clip"]), crop, built.prepare, 64)
        feats, clip_probs = features_and_probs(model, batches, dev)
        probs.append(clip_probs)
        counts.append(len(feats))
        return feats

    if out_features:
        common.write_features(out_features, clips, meta, scored_features)
    else:
        for clip in clips:
            scored_features(clip)
    common.write_scores(
        out_scores,
        clips,
        classes,
        np.concatenate(probs),
        np.repeat(np.arange(len(clips)), counts),
        "no face found",
        f"{backbone} frames",
    )
    common.keep(
        out_model,
        out_provenance,
        built.model,
        meta,
        config,
        settings,
        history,
        started,
        dev,
        {backbone: built.weights},
        extra={"n_scored_frames": int(sum(counts))},
    )


def rebuild(model_pt: str | Path) -> tuple[Built, dict]:
    """A fine-tuned frame CNN from its file (the state dict holds every weight).

    ``model`` is the network that scores faces: over the test-time views it was trained with.
    """
    saved = common.load(model_pt)
    meta = saved["meta"]
    prior = meta["classes"] if meta.get("prior_classes") else None
    built = build(meta["backbone"], len(meta["classes"]), meta["fc_width"], None, 0, prior)
    built.model.load_state_dict(saved["state_dict"])
    built.model = scorer(built.model, meta.get("flip_test", False), meta.get("shift_test", 0.0))
    return built, meta


def face_batches(path: str | None, crop: int, prepare, batch_size: int) -> Iterator[torch.Tensor]:
    """The clip's found faces, centre-cropped and prepared, batch by batch (none: no face).

    Read one batch at a time: memory does not grow with the clip's length.
    """
    rows = found_rows(path) if path else np.zeros(0, int)
    if not len(rows):
        return
    with h5py.File(path, "r") as f:
        faces = f["faces"]
        for i in range(0, len(rows), batch_size):
            yield prepare(centre_crop(faces[rows[i : i + batch_size]], crop))


def cnn_features(
    model_pt: str,
    clips: list[dict],
    faces_h5: dict[str, str],
    out: str,
    device: str = "auto",
    batch_size: int = 64,
) -> None:
    """The fc7 features of every found face of every clip, one HDF5 dataset per clip."""
    dev = pick_device(device)
    built, meta = rebuild(model_pt)
    common.write_features(
        out,
        clips,
        meta,
        lambda clip: common.features(
            built.model,
            face_batches(faces_h5.get(clip["clip"]), meta["crop"], built.prepare, batch_size),
            dev,
        ),
    )


def load(model_pt: str | Path, device: str = "cpu") -> tuple[Built, dict]:
    """A fine-tuned frame CNN ready to score faces on ``device`` (``infer``'s first argument)."""
    built, meta = rebuild(model_pt)
    built.model.to(pick_device(device)).eval()
    return built, meta


def infer(
    loaded: tuple[Built, dict], faces_h5: str | Path, batch_size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """fc7 features and class probabilities of a clip's found faces, batch by batch.

    One pass; ``loaded`` is what :func:`load` gives. Nothing when the clip has no found
    face. Memory does not grow with the clip's length.
    """
    built, meta = loaded
    dev = next(built.model.parameters()).device
    batches = face_batches(str(faces_h5), meta["crop"], built.prepare, batch_size)
    return common.scored_batches(built.model, batches, dev)


def features_and_probs(model: nn.Module, batches, dev) -> tuple[np.ndarray, np.ndarray]:
    """fc7 features of the batches and their class probabilities, each concatenated.

    The same batch-by-batch pass as :func:`infer`, so the workflow's frame scores and
    ``msff predict``'s are computed alike.
    """
    pairs = list(common.scored_batches(model, batches, dev))
    if not pairs:
        return (
            np.zeros((0, model.fc_width), np.float32),
            np.zeros((0, model.num_classes), np.float32),
        )
    return np.concatenate([f for f, _ in pairs]), np.concatenate([p for _, p in pairs])
