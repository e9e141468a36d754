"""The 2-layer BLSTM over windows of a clip's feature sequence (face frames or segments).

A clip's score is the mean of the softmax over its windows; a clip with no feature
(no face found, nothing heard) gets the uniform row and a note. With ``members`` > 1 the
head is that many BLSTMs trained with consecutive seeds, scoring the mean of their
probabilities (:class:`msff.models.blstm.BLSTMEnsemble`). With ``speaker_norm`` > 0
each speaker's feature sequences are standardised over that speaker's clips first
(:mod:`msff.speakers`); the typical training speaker's statistics and those of every
speaker of 2 or more clips are saved with the model, for ``infer``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from msff import cache, speakers
from msff.datasets import FeatureWindows, windows
from msff.devices import pick_device
from msff.heads import common
from msff.models.blstm import BLSTM, BLSTMEnsemble
from msff.train import TrainSettings, predict


def train_blstm(
    features_h5: str,
    clips: list[dict],
    out_scores: str,
    out_model: str,
    out_provenance: str,
    classes: list[str],
    settings: TrainSettings | dict,
    hidden: int,
    window: int,
    stride: int,
    unseen_note: str,
    device: str = "auto",
    config: dict | None = None,
    checkpoint: str | Path | None = None,
    speaker_norm: float = 0.0,
    members: int = 1,
) -> None:
    """The 2-layer BLSTM over windows of a clip's feature sequence.

    ``members`` > 1: that many BLSTMs on the same windows, seeds ``settings.seed`` and
    the next ones, each early-stopped on its own; the scores are their mean probability.

    ``speaker_norm`` > 0: each speaker's sequences standardised over its own clips (all
    splits, no labels), shrunk toward the typical training speaker by that many clips.
    Features that end in the frame CNN's prior (its backbone's class log-probabilities,
    the file's ``prior_classes``) give a BLSTM that starts from their mean over a window;
    they are never standardised.
    """
    settings = common.as_settings(settings)
    started, dev = time.time(), pick_device(device)
    features, source = cache.read_features(features_h5, [c["clip"] for c in clips])
    common.check_finite_features(features, clips, features_h5, Path(out_model).stem)
    labels = common.labels(clips, classes)
    prior = int(source.get("prior_classes", 0))
    normalised = None
    if speaker_norm > 0:
        standardised, normalised = by_speaker(features, clips, speaker_norm)
        features = [_with_prior(s, f, prior) for s, f in zip(standardised, features, strict=True)]

    def windowed(idx):
        return FeatureWindows([features[i] for i in idx], [labels[i] for i in idx], window, stride)

    input_dim = features[0].shape[1] if features else 1
    train_set = windowed(common.subset(clips, "train"))
    val_set = windowed(common.subset(clips, "val"))
    trained, histories = [], []
    for k in range(members):
        member_settings = replace(settings, seed=settings.seed + k)
        torch.manual_seed(member_settings.seed)
        trained.append(BLSTM(input_dim, hidden, 2, len(classes), prior=prior))
        histories.append(
            common.fit_head(
                trained[-1],
                train_set,
                val_set,
                member_settings,
                len(classes),
                dev,
                _member_path(checkpoint, k),
                Path(out_model).stem if members == 1 else f"{Path(out_model).stem} member {k}",
            )
        )
    model = trained[0] if members == 1 else BLSTMEnsemble(trained)
    every = windowed(range(len(clips)))
    probs = predict(model, every, dev)
    name = f"{source.get('backbone', '')}_blstm"
    common.write_scores(out_scores, clips, classes, probs, every.owner, unseen_note, name)
    meta = dict(
        input_dim=int(features[0].shape[1]) if features else 0,
        hidden=hidden,
        window=window,
        stride=stride,
        classes=classes,
        features=str(features_h5),
        backbone=str(source.get("backbone")),
        speaker_norm=speaker_norm,
        prior=prior,
        members=members,
    )
    common.keep(
        out_model,
        out_provenance,
        model,
        meta,
        config,
        settings,
        histories[0],
        started,
        dev,
        {"features": str(source.get("weights"))},
        # every member's curves; the first member's are the provenance's `history` too
        extra={"member_histories": [asdict(h) for h in histories]} if members > 1 else None,
        arrays=normalised,
    )


def _member_path(checkpoint: str | Path | None, k: int) -> Path | None:
    """Member ``k``'s checkpoint: its own file, so a resumed job keeps every member's."""
    if checkpoint is None:
        return None
    checkpoint = Path(checkpoint)
    return checkpoint if k == 0 else checkpoint.with_name(f"{checkpoint.name}.member{k}")


def _with_prior(standardised: np.ndarray, raw: np.ndarray, prior: int) -> np.ndarray:
    """``standardised`` with its last ``prior`` columns (log-probabilities) as in ``raw``."""
    if prior and len(raw):
        standardised = standardised.copy()
        standardised[:, -prior:] = raw[:, -prior:]
    return standardised


def by_speaker(
    features: list[np.ndarray], clips: list[dict], prior: float
) -> tuple[list[np.ndarray], dict]:
    """The clips' sequences standardised by speaker, and the statistics ``infer`` needs.

    The typical speaker is that of the training clips with features; the statistics of
    every speaker of 2 or more clips with features are kept (a speaker of one clip gets the
    same alone).
    """
    statistics = common.speaker_statistics(features, clips, prior, "blstm_speaker_norm")
    if statistics is None:
        return features, {}
    typical, known = statistics
    names = [c["speaker"] for c in clips]
    out = speakers.standardise(features, names, typical, prior, known)  # the rest computed
    return [f.astype(np.float32) for f in out], {"speakers": common.packed_speakers(typical, known)}


def load(model_pt: str | Path) -> tuple[BLSTM | BLSTMEnsemble, dict]:
    """A trained BLSTM (or ensemble) and its meta (``infer``'s first argument); on the CPU.

    A speaker-normalised model's meta also holds its speakers' statistics (``speakers``).
    """
    saved = common.load(model_pt)
    meta = dict(saved["meta"])
    members = [
        BLSTM(
            meta["input_dim"], meta["hidden"], 2, len(meta["classes"]), prior=meta.get("prior", 0)
        )
        for _ in range(meta.get("members", 1))
    ]
    model = members[0] if len(members) == 1 else BLSTMEnsemble(members)
    model.load_state_dict(saved["state_dict"])
    if "speakers" in saved:  # speaker-normalised (and it had training features to do it)
        meta["speakers"] = common.unpacked_speakers(saved["speakers"])
    return model.eval(), meta


def enrol(
    loaded: tuple[BLSTM | BLSTMEnsemble, dict], speaker: str, sequences: list[np.ndarray]
) -> bool:
    """Keep a new ``speaker``'s statistics over these feature sequences, for ``infer``.

    As the workflow's of a speaker of its sheet (sequences rounded to float16 first, as
    it stores them). False (nothing kept) when the model is not speaker-normalised, already
    keeps ``speaker``, or no sequence has rows.
    """
    rounded = [np.asarray(s).astype(np.float16).astype(np.float64) for s in sequences]
    return common.enrol(loaded[1], speaker, rounded)


def infer(
    loaded: tuple[BLSTM | BLSTMEnsemble, dict],
    features,
    batch_windows: int = 256,
    speaker: str | None = None,
) -> np.ndarray | None:
    """Class probabilities of one clip from its feature sequence; None when it has none.

    ``features``: (n, width) array-like, an HDF5 dataset too; rounded to float16 first,
    as the workflow stores them. Windows are read and scored ``batch_windows`` at a
    time, so memory does not grow with the clip's length. A speaker-normalised model
    standardises the clip by ``speaker``'s statistics in the run when it kept them, else
    as a speaker of one clip (its own moments, shrunk).
    """
    model, meta = loaded
    prior = meta.get("prior", 0)
    index = windows(len(features), meta["window"], meta["stride"])
    if not index:
        return None
    mean, scale = _speaker_statistics(meta, features, speaker)
    total = torch.zeros(model.num_classes, dtype=torch.float64)
    for s in range(0, len(index), batch_windows):
        part = index[s : s + batch_windows]
        low = min(int(w.min()) for w in part)
        block = np.asarray(features[low : max(int(w.max()) for w in part) + 1])
        block = block.astype(np.float16).astype(np.float32)
        if mean is not None:  # as train_blstm's
            block = _with_prior(((block - mean) / scale).astype(np.float32), block, prior)
        batch = torch.from_numpy(np.stack([block[w - low] for w in part]))
        with torch.no_grad():
            total += torch.softmax(model(batch), 1).sum(0).double()
    return (total / len(index)).float().numpy()


def _speaker_statistics(meta: dict, features, speaker: str | None, chunk: int = 4096):
    """``(mean, scale)`` to standardise a clip by, or ``(None, None)`` without normalisation.

    A speaker the model kept gives its statistics; otherwise the clip's own moments, read
    ``chunk`` rows at a time in two passes (memory does not grow with its length), shrunk
    as for a speaker of one clip.
    """
    kept = meta.get("speakers")
    if not kept:
        return None, None
    if speaker in kept["known"]:
        return kept["known"][speaker]
    n = len(features)

    def rows():
        for s in range(0, n, chunk):
            yield np.asarray(features[s : s + chunk]).astype(np.float16).astype(np.float64)

    mean = sum(r.sum(axis=0) for r in rows()) / n
    var = sum(((r - mean) ** 2).sum(axis=0) for r in rows()) / n
    return speakers.shrunk(mean, var, 1, kept["typical"], meta["speaker_norm"])
