"""The spectrogram CNN of the audio branch: VGG-19 on segment images, then its features.

finetune_audio_cnn  VGG-19 (or the shallower VGG layout ``layers`` names) trained on the
                    spectrogram segments (every rate scale, the paper's noise, optional
                    band masking, quiet segments optionally left out) of the training clips
audio_features      its fc7 features of every scale-1.0 segment of every clip -> a
                    features file (:mod:`msff.cache` layout), the audio BLSTM's input
infer               one clip's spectrograms -> fc7 features (the BLSTM's input) and
                    each segment's class probabilities, from one pass
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import torch

from msff.datasets import SpectrogramAugment, SpectrogramSegments, scale_rows
from msff.devices import pick_device
from msff.heads import common
from msff.models import vgg19
from msff.models.build import Built
from msff.train import TrainSettings


def finetune_audio_cnn(
    clips: list[dict],
    spectrograms_h5: dict[str, str],
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings | dict,
    fc_width: int,
    width: float,
    input_size: int,
    weights: str | None,
    gaussian_std: float,
    salt_pepper: float,
    batch_norm: bool = False,
    layers: str | list = "E",
    pool: int = 7,
    standardise: str = "none",
    freq_masks: int = 0,
    time_masks: int = 0,
    mask_width: float = 0.0,
    quiet_db: float | None = None,
    dropout: float = 0.5,
    device: str = "auto",
    config: dict | None = None,
    checkpoint: str | Path | None = None,
) -> None:
    """Train the VGG on spectrogram segments (all rate scales, noise) of the training clips.

    ``layers``, ``pool``, ``standardise``: the network and its input
    (:func:`msff.models.vgg19.build`); ``freq_masks``, ``time_masks``, ``mask_width``:
    band masking beside the paper's noise (:class:`msff.datasets.SpectrogramAugment`);
    ``quiet_db``: training leaves out segments this many dB under the clip's peak;
    ``dropout``: after fc6 and fc7.
    """
    settings = common.as_settings(settings)
    started, dev = time.time(), pick_device(device)
    torch.manual_seed(settings.seed)
    architecture = dict(
        fc_width=fc_width,
        width=width,
        input_size=input_size,
        batch_norm=batch_norm,
        layers=layers,
        pool=pool,
        standardise=standardise,
        dropout=dropout,
    )
    built = vgg19.build(len(classes), weights=weights, **architecture)
    labels = common.labels(clips, classes)
    paths = [spectrograms_h5.get(c["clip"], "") for c in clips]
    noise_and_masks = (gaussian_std, salt_pepper, freq_masks, time_masks, mask_width)
    augment = SpectrogramAugment(*(noise_and_masks if settings.augment else ()))

    def segments(idx, train):
        idx = [i for i in idx if paths[i]]
        return SpectrogramSegments(
            [paths[i] for i in idx],
            [labels[i] for i in idx],
            train,
            built.prepare,
            seed=settings.seed,
            augment=augment,
            quiet_db=quiet_db,
        ), idx

    train_set, _ = segments(common.subset(clips, "train"), True)
    val_set, _ = segments(common.subset(clips, "val"), False)
    history = common.fit_head(
        built.model, train_set, val_set, settings, len(classes), dev, checkpoint, "vgg19_audio_cnn"
    )
    meta = dict(
        backbone="vgg19_audio",
        **architecture,
        classes=classes,
        weights=built.weights,
        pretrained=built.pretrained,
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
        {"vgg19": built.weights},
        extra={
            "augmentation": asdict(augment),
            "quiet_db": quiet_db,
            "training_segments": len(train_set),
        },
    )


def rebuild(model_pt: str | Path) -> tuple[Built, dict]:
    """A trained spectrogram VGG from its file (the state dict holds every weight)."""
    saved = common.load(model_pt)
    meta = saved["meta"]
    built = vgg19.build(
        len(meta["classes"]),
        meta["fc_width"],
        meta["width"],
        None,
        meta["input_size"],
        meta["batch_norm"],
        meta.get("layers", "E"),
        meta.get("pool", 7),
        meta.get("standardise", "none"),
        meta.get("dropout", 0.5),
    )
    built.model.load_state_dict(saved["state_dict"])
    return built, meta


def segment_batches(path: str | None, prepare, batch_size: int) -> Iterator[torch.Tensor]:
    """The clip's scale-1.0 segment images, prepared, batch by batch (none: nothing heard).

    Read one batch at a time: memory does not grow with the clip's length.
    """
    if not path:
        return
    with h5py.File(path, "r") as f:
        # Inside the loop: a clip with an error cache has no images, and no rows to read.
        for row in scale_rows(f, train=False):
            images = f["images"]
            for s in range(0, images.shape[1], batch_size):
                yield prepare(images[row, s : s + batch_size])


def audio_features(
    model_pt: str,
    clips: list[dict],
    spectrograms_h5: dict[str, str],
    out: str,
    device: str = "auto",
    batch_size: int = 64,
) -> None:
    """The fc7 features of every scale-1.0 segment of every clip that can be heard."""
    dev = pick_device(device)
    built, meta = rebuild(model_pt)
    common.write_features(
        out,
        clips,
        meta,
        lambda clip: common.features(
            built.model,
            segment_batches(spectrograms_h5.get(clip["clip"]), built.prepare, batch_size),
            dev,
        ),
    )


def load(model_pt: str | Path, device: str = "cpu") -> tuple[Built, dict]:
    """A trained spectrogram CNN ready to score segments on ``device`` (for ``infer``)."""
    built, meta = rebuild(model_pt)
    built.model.to(pick_device(device)).eval()
    return built, meta


def infer(
    loaded: tuple[Built, dict], spectrograms_h5: str | Path, batch_size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """fc7 features and class probabilities of a clip's scale-1.0 segments, batch by batch.

    One pass; the features are the audio BLSTM's input (``blstm.infer``). Nothing when
    nothing can be heard (no segment, or a silent track). Memory does not grow with the
    clip's length.
    """
    built, _ = loaded
    dev = next(built.model.parameters()).device
    batches = segment_batches(str(spectrograms_h5), built.prepare, batch_size)
    return common.scored_batches(built.model, batches, dev)
