"""The spectrogram CNN of the audio branch: VGG-19 on segment images, then its features.

finetune_audio_cnn  VGG-19 (or the shallower VGG layout ``layers`` names) trained on the
                    spectrogram segments (every rate scale, the paper's noise, optional
                    band masking, quiet segments optionally left out) of the training clips
audio_features      its fc7 features of every scale-1.0 segment of every clip -> a
                    features file (:mod:`msff.cache` layout), the audio BLSTM's input
infer               one clip's spectrograms -> fc7 features (the BLSTM's input) and
                    each segment's class probabilities, from one pass

With ``speaker_norm`` > 0 every image first loses its speaker's mean level of each band
(at its rate scale, over the pixels where something is heard; :func:`recentred`): the
speaker's voice and microphone colour every clip's spectrum the same way, and the CNN
should see how a segment departs from its speaker instead. A speaker's levels are the mean
over all its clips in the sheet (every split, no label), shrunk toward the typical
training speaker's by ``speaker_norm`` pseudo-clips (:mod:`msff.speakers`); the typical
levels and those of every speaker of 2 or more clips are saved with the model, for
``audio_features`` and ``infer``, and :func:`enrol` adds a new speaker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import torch

from msff import speakers
from msff.datasets import SpectrogramAugment, SpectrogramSegments, recentred, scale_rows
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
    speaker_norm: float = 0.0,
    device: str = "auto",
    config: dict | None = None,
    checkpoint: str | Path | None = None,
) -> None:
    """Train the VGG on spectrogram segments (all rate scales, noise) of the training clips.

    ``layers``, ``pool``, ``standardise``: the network and its input
    (:func:`msff.models.vgg19.build`); ``freq_masks``, ``time_masks``, ``mask_width``:
    band masking beside the paper's noise (:class:`msff.datasets.SpectrogramAugment`);
    ``quiet_db``: training leaves out segments this many dB under the clip's peak;
    ``dropout``: after fc6 and fc7; ``speaker_norm`` > 0: every image less its speaker's
    band levels, shrunk by that many clips (the module's docstring).
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
    profiles, kept = [None] * len(clips), None
    if speaker_norm > 0:
        profiles, kept = speaker_profiles(clips, spectrograms_h5, speaker_norm)
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
            profiles=[profiles[i] for i in idx],
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
        speaker_norm=speaker_norm,
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
        arrays=kept,
    )


def band_levels(path: str | None, chunk: int = 256) -> np.ndarray:
    """A clip's mean level of each band at each rate scale, as one row (1, scales * bands).

    The mean over the pixels where something is heard (above the image's floor, 0), so a
    clip's pauses do not lower it; a band never heard gets 0. No rows when nothing can
    be heard (no cache, a recorded error, a silent track). Read ``chunk`` segments at a
    time: memory does not grow with the clip's length.
    """
    if not path:
        return np.zeros((0, 0))
    with h5py.File(path, "r") as f:
        if not len(scale_rows(f, train=True)):
            return np.zeros((0, 0))
        images = f["images"]  # (scales, segments, bands, time)
        n_scales, n = images.shape[:2]
        sums, heard = np.zeros((n_scales, images.shape[2])), np.zeros((n_scales, images.shape[2]))
        for s in range(0, n, chunk):
            block = images[:, s : s + chunk]
            sums += block.sum(axis=(1, 3), dtype=np.float64)
            heard += (block > 0).sum(axis=(1, 3))
        return (sums / np.maximum(heard, 1)).reshape(1, -1)


def speaker_profiles(
    clips: list[dict], spectrograms_h5: dict[str, str], prior: float
) -> tuple[list[np.ndarray | None], dict | None]:
    """Each clip's speaker's shrunk band levels (None: nothing heard), and what the model keeps.

    The typical speaker is that of the training clips that can be heard; a speaker's
    levels are the mean of its clips' (each clip counts once). Nothing is normalised when
    no training clip can be heard.
    """
    own = [band_levels(spectrograms_h5.get(c["clip"])) for c in clips]
    statistics = common.speaker_statistics(own, clips, prior, "audio_cnn_speaker_norm")
    if statistics is None:
        return [None] * len(clips), None
    typical, known = statistics
    names = [c["speaker"] for c in clips]
    every = speakers.statistics(own, names, typical, prior)
    profiles = [every[n][0] if len(o) else None for o, n in zip(own, names, strict=True)]
    return profiles, {"speakers": common.packed_speakers(typical, known)}


def enrol(loaded: tuple[Built, dict], speaker: str, spectrograms_h5: list[str | Path]) -> bool:
    """Keep a new ``speaker``'s band levels over these clips, for ``infer``'s ``speaker``.

    As the workflow's levels of a speaker of its sheet. False (nothing kept) when the
    model is not speaker-normalised, already keeps ``speaker``, or none of the clips is heard.
    """
    if not common.needs_enrolment(loaded[1], speaker):
        return False  # before reading the clips
    return common.enrol(loaded[1], speaker, [band_levels(str(p)) for p in spectrograms_h5])


def clip_profile(meta: dict, path: str | None, speaker: str | None = None) -> np.ndarray | None:
    """The band levels a clip's images lose: None when the model is not speaker-normalised.

    A speaker the model kept (or :func:`enrol` added) gives its levels; any other clip is
    a speaker of one clip (its own levels, shrunk toward the typical speaker's).
    """
    kept = meta.get("speakers")
    if not kept or not path:
        return None
    if speaker in kept["known"]:
        return kept["known"][speaker][0]
    own = band_levels(path)
    if not len(own):
        return None
    return speakers.shrunk(
        own[0], np.zeros(own.shape[1]), 1, kept["typical"], meta["speaker_norm"]
    )[0]


def rebuild(model_pt: str | Path) -> tuple[Built, dict]:
    """A trained spectrogram VGG from its file (the state dict holds every weight).

    A speaker-normalised model's meta also holds its speakers' band levels (``speakers``).
    """
    saved = common.load(model_pt)
    meta = dict(saved["meta"])
    if "speakers" in saved:
        meta["speakers"] = common.unpacked_speakers(saved["speakers"])
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


def segment_batches(
    path: str | None, prepare, batch_size: int, profile: np.ndarray | None = None
) -> Iterator[torch.Tensor]:
    """The clip's scale-1.0 segment images, prepared, batch by batch (none: nothing heard).

    Read one batch at a time: memory does not grow with the clip's length. ``profile``:
    the (scales * bands) levels the images lose first (:func:`clip_profile`), or None.
    """
    if not path:
        return
    with h5py.File(path, "r") as f:
        # Inside the loop: a clip with an error cache has no images, and no rows to read.
        for row in scale_rows(f, train=False):
            images = f["images"]
            levels = None if profile is None else profile.reshape(images.shape[0], -1)[row]
            for s in range(0, images.shape[1], batch_size):
                batch = images[row, s : s + batch_size]
                yield prepare(batch if levels is None else recentred(batch, levels))


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

    def batches(clip):
        path = spectrograms_h5.get(clip["clip"])
        profile = clip_profile(meta, path, clip["speaker"])
        return segment_batches(path, built.prepare, batch_size, profile)

    common.write_features(
        out,
        clips,
        meta,
        lambda clip: common.features(built.model, batches(clip), dev),
    )


def load(model_pt: str | Path, device: str = "cpu") -> tuple[Built, dict]:
    """A trained spectrogram CNN ready to score segments on ``device`` (for ``infer``)."""
    built, meta = rebuild(model_pt)
    built.model.to(pick_device(device)).eval()
    return built, meta


def infer(
    loaded: tuple[Built, dict],
    spectrograms_h5: str | Path,
    batch_size: int = 64,
    speaker: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """fc7 features and class probabilities of a clip's scale-1.0 segments, batch by batch.

    One pass; the features are the audio BLSTM's input (``blstm.infer``). Nothing when
    nothing can be heard (no segment, or a silent track). Memory does not grow with the
    clip's length. A speaker-normalised model takes ``speaker``'s band levels in the run
    when it kept them, else the clip's own (:func:`clip_profile`).
    """
    built, meta = loaded
    dev = next(built.model.parameters()).device
    profile = clip_profile(meta, str(spectrograms_h5), speaker)
    batches = segment_batches(str(spectrograms_h5), built.prepare, batch_size, profile)
    return common.scored_batches(built.model, batches, dev)
