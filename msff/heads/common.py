"""The skeleton every neural head trains through: labels and splits, fit, scores, saving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from msff import cache, scores, speakers
from msff.errors import ConfigError, TrainingError
from msff.logs import log
from msff.train import TrainSettings, clip_means, fit, write_provenance


def as_settings(settings: TrainSettings | dict) -> TrainSettings:
    """Training settings from a rule's params (a dict) or as they are."""
    return settings if isinstance(settings, TrainSettings) else TrainSettings(**settings)


def labels(clips: list[dict], classes: list[str]) -> list[int]:
    """The class index of every clip."""
    return [classes.index(c["class"]) for c in clips]


def subset(clips: list[dict], split: str) -> list[int]:
    """Indices of the clips of one split."""
    return [i for i, c in enumerate(clips) if c["split"] == split]


def check_finite_features(
    features: list[np.ndarray], clips: list[dict], path: str | Path, name: str
) -> None:
    """Refuse a features file holding NaN or infinity, naming the model, file, clip and row.

    Features are the only float inputs read from disk (faces and spectrograms are uint8);
    a NaN there would otherwise surface as a NaN loss, or as scores of a clip never seen.
    """
    for clip, values in zip(clips, features, strict=True):
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise TrainingError(
                f"{name}: {path}: clip {clip['clip']!r} ({clip['split']}): {int(bad.sum())} "
                f"of {bad.size} feature values are NaN or infinite, in rows "
                f"{rows[:5].tolist()}{' ...' if len(rows) > 5 else ''} of {len(values)}; "
                "nothing trained"
            )


def save(path: str | Path, model: torch.nn.Module, meta: dict, arrays: dict | None = None) -> None:
    """Write a trained model's state dict and what rebuilds it, atomically.

    ``arrays``: more entries beside them (tensors, in dicts and lists), e.g. what a
    speaker-normalised BLSTM keeps of its speakers; not in the provenance.
    """
    with cache.atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta, **(arrays or {})}, tmp)


def load(path: str | Path) -> dict:
    """A saved model: ``state_dict`` and ``meta`` (tensors only: no code is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def packed_speakers(typical: dict, known: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """A speaker-normalised model's statistics as tensors, to save beside its state dict.

    ``typical``: :func:`msff.speakers.typical_speaker`; ``known``: the kept speakers'
    ``(mean, scale)`` (:func:`msff.speakers.kept_statistics`). :func:`unpacked_speakers`
    reads them back.
    """
    return {
        "typical_mean": torch.from_numpy(typical["speaker_mean"]),
        "typical_var": torch.from_numpy(typical["speaker_var"]),
        "known": {s: [torch.from_numpy(m), torch.from_numpy(sd)] for s, (m, sd) in known.items()},
    }


def speaker_statistics(
    rows: list[np.ndarray], clips: list[dict], prior: float, setting: str
) -> tuple[dict, dict] | None:
    """The typical training speaker's statistics and those a speaker-normalised model keeps.

    ``rows``: per clip, what the model standardises (no rows: nothing heard or seen). The
    typical speaker is that of the training clips with rows; kept are the speakers of 2
    or more clips with rows (:func:`msff.speakers.kept_statistics`). None when no training
    clip has rows. Logs the few-clips warning, naming the config key ``setting``.
    """
    names = [c["speaker"] for c in clips]
    train = [i for i, c in enumerate(clips) if c["split"] == "train" and len(rows[i])]
    if not train:
        return None
    typical = speakers.typical_speaker([rows[i] for i in train], [names[i] for i in train])
    speakers.warn_if_few_clips([n for r, n in zip(rows, names, strict=True) if len(r)], setting)
    return typical, speakers.kept_statistics(rows, names, typical, prior)


def needs_enrolment(meta: dict, speaker: str) -> bool:
    """Whether a model (its ``meta``) is speaker-normalised and does not keep ``speaker``."""
    kept = meta.get("speakers")
    return bool(kept) and speaker not in kept["known"]


def enrol(meta: dict, speaker: str, clips: list[np.ndarray]) -> bool:
    """Keep a new ``speaker``'s statistics over ``clips`` in a speaker-normalised model's meta.

    ``clips``: each an (n, width) array of what the model standardises (no rows: left
    out). False (nothing kept) when the model is not speaker-normalised, already keeps
    ``speaker``, or no clip has rows.
    """
    if not needs_enrolment(meta, speaker):
        return False
    kept = meta["speakers"]
    statistics = speakers.of_one_speaker(clips, kept["typical"], meta["speaker_norm"])
    if statistics is None:
        return False
    kept["known"][speaker] = statistics
    return True


def unpacked_speakers(saved: dict) -> dict:
    """Statistics saved by :func:`packed_speakers`, as ``{"typical", "known"}`` of numpy."""
    return {
        "typical": {
            "speaker_mean": saved["typical_mean"].numpy(),
            "speaker_var": saved["typical_var"].numpy(),
        },
        "known": {s: (m.numpy(), sd.numpy()) for s, (m, sd) in saved["known"].items()},
    }


def keep(
    out_model,
    out_provenance,
    model,
    meta,
    config,
    settings,
    history,
    started,
    dev,
    weights: dict,
    extra: dict | None = None,
    arrays: dict | None = None,
) -> None:
    """Save a trained model (``arrays`` beside it: :func:`save`) and its provenance."""
    save(out_model, model, meta, arrays)
    write_provenance(
        out_provenance,
        config=config or {},
        settings=settings,
        history=history,
        started=started,
        finished=time.time(),
        weights=weights,
        device=dev,
        extra={"model": meta, **(extra or {})},
    )


def report(clips, rows, classes, name) -> None:
    """Log the accuracy of a scores matrix on each split."""
    for split in ("train", "val", "test"):
        pick = subset(clips, split)
        if pick:
            truth = np.array(labels([clips[i] for i in pick], classes))
            accuracy = float((rows[pick].argmax(1) == truth).mean())
            log.info(
                "%s: %s accuracy %.3f over %d clips (all clips; unseen ones uniform)",
                name,
                split,
                accuracy,
                len(pick),
            )


def write_scores(out, clips, classes, probs, owner, unseen_note, name) -> np.ndarray:
    """Average item probabilities per clip and write the scores file of every clip."""
    rows, seen = clip_means(probs, owner, len(clips))
    notes = ["" if s else unseen_note for s in seen]
    scores.write(out, [c["clip"] for c in clips], [c["split"] for c in clips], rows, classes, notes)
    report(clips, rows, classes, name)
    return rows


def fit_head(model, train_set, val_set, settings, n_classes, device, checkpoint=None, name=""):
    """Train a head on its training items (each item's label for class weighting).

    ``checkpoint``: where training keeps its state after every epoch, so a killed or
    retried job resumes (:func:`msff.train.fit`); ``name`` names the model in errors.
    """
    if len(train_set) == 0:
        raise ConfigError(
            f"{name}: no training item: no training clip has a face / audio to learn from"
        )
    per_item = [train_set.labels[o] for o in train_set.owner]
    return fit(
        model,
        train_set,
        val_set,
        settings,
        n_classes,
        device,
        per_item,
        log=log.info,
        checkpoint=checkpoint,
        name=name,
    )


def global_owners(dataset, idx) -> np.ndarray:
    """Owners of a dataset built on the clips ``idx``, as indices into all clips."""
    return np.asarray(idx, dtype=int)[dataset.owner] if len(dataset) else dataset.owner


def write_features(out, clips: list[dict], meta: dict, features_of) -> None:
    """A features file (:mod:`msff.cache` layout): ``features_of(clip)`` of every clip.

    ``features_of`` gives a clip's (n, D) features, (0, D) when it has none; clips are
    computed and written one at a time.
    """
    cache.write_features(
        out,
        dict(
            backbone=meta["backbone"],
            fc_width=meta["fc_width"],
            weights=meta["weights"],
            prior_classes=meta.get("prior_classes", 0),
        ),
        ((c["clip"], features_of(c)) for c in clips),
    )


def feature_batches(model, batches, dev, method: str = "features") -> Iterator:
    """``model.features`` of each batch, one at a time; bf16 and channels-last on a card.

    ``method``: another of the model's methods of a batch; where it gives a tuple of
    tensors, so does each step.

    No-grad and autocast are entered per batch, never across a ``yield``: the caller's
    code between batches runs as it would without this generator.
    """
    model.to(dev).eval()
    cuda = dev.type == "cuda"
    if cuda:  # what bench/stages.py times the bare backbone with on a card
        model.to(memory_format=torch.channels_last)
    for x in batches:
        if cuda:  # pinned pages: the copy to the card overlaps the previous batch
            # contiguous first: a prepared spectrogram batch is one grey channel expanded
            # to three (a view), and pinning writes into a copy of the same layout
            x = x.contiguous().pin_memory().to(dev, non_blocking=True)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=cuda):
            out = getattr(model, method)(x.to(dev))
        yield (
            tuple(o.float().cpu().numpy() for o in out)
            if isinstance(out, tuple)
            else out.float().cpu().numpy()
        )


def features(model, batches, dev) -> np.ndarray:
    """``model.features`` of every batch, concatenated (:func:`feature_batches`)."""
    out = list(feature_batches(model, batches, dev))
    return np.concatenate(out) if out else np.zeros((0, model.fc_width), np.float32)


def scored_batches(model, batches, dev) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """fc7 features of each batch and the class probabilities classified from them.

    A model with test-time views (``scored_features``, e.g. the frame CNN's
    :class:`~msff.heads.frame_cnn.TestViews`) is classified from its features averaged
    over every view, in the same pass.
    """
    views = hasattr(model, "scored_features")
    for out in feature_batches(model, batches, dev, "scored_features" if views else "features"):
        feats, scored = out if views else (out, out)
        with torch.no_grad():
            logits = model.classify(torch.from_numpy(scored).to(dev))
        yield feats, torch.softmax(logits.float(), 1).cpu().numpy()
