"""Prediction on clips the workflow never saw, with the models a workflow run trained.

A new clip goes through the same stages as the workflow's clips (with the same config),
then through every fused model of ``results/fusion/weights.json``; their class scores
are fused with those weights. A model that cannot see the clip (no face found, no or
silent audio) contributes uniform scores, as in the workflow, and is reported as unused.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from msff import cache, config, fusion, media, sheet
from msff.datasets import FaceClips, SpectrogramSegments, found_rows
from msff.errors import ConfigError
from msff.models import BLSTM
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames
from msff.stages.models import _face_batches, _features, _load, _rebuild
from msff.svm import predict_scores
from msff.train import windows


def _blstm(path: Path, features: np.ndarray) -> np.ndarray | None:
    saved = _load(path)
    meta = saved["meta"]
    model = BLSTM(meta["input_dim"], meta["hidden"], 2, len(meta["classes"]))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    index = windows(len(features), meta["window"], meta["stride"])
    if not index:
        return None
    batch = torch.from_numpy(np.stack([features[w] for w in index]).astype(np.float32))
    with torch.no_grad():
        return torch.softmax(model(batch), 1).mean(0).numpy()


def _frame_cnn(models: Path, backbone: str, faces: Path) -> tuple[np.ndarray, np.ndarray]:
    """fc7 features and class probabilities of every found face, from one backbone pass."""
    built, meta = _rebuild(models / f"{backbone}_cnn.pt")
    batches = _face_batches(str(faces), meta["crop"], built.prepare, 64)
    features = _features(built.model, batches, torch.device("cpu"))
    with torch.no_grad():
        logits = built.model.classify(torch.from_numpy(features))
    return features, torch.softmax(logits, 1).numpy()


def _probabilities(
    name: str, models: Path, caches: dict[str, Path], frame_cnns: dict | None = None
) -> np.ndarray | None:
    """One model's class scores for one clip, or None when it cannot see the clip.

    ``frame_cnns`` keeps each backbone's pass over the faces, so its frame scores and its
    BLSTM reuse one computation of the features.
    """
    faces, spectro, smile = caches.get("faces"), caches.get("spectrograms"), caches.get("opensmile")
    if name.endswith(("_frames", "_blstm")) and name != "vgg19_blstm_audio":
        backbone = name.rsplit("_", 1)[0]
        if faces is None or not len(found_rows(faces)):
            return None
        frame_cnns = {} if frame_cnns is None else frame_cnns
        if backbone not in frame_cnns:
            frame_cnns[backbone] = _frame_cnn(models, backbone, faces)
        features, probs = frame_cnns[backbone]
        if name.endswith("_frames"):
            return probs.mean(0)
        # The workflow stores fc7 features as float16: round the same way.
        return _blstm(models / f"{backbone}_blstm.pt", features.astype(np.float16))
    if name == "c3d":
        if faces is None or not len(found_rows(faces)):
            return None
        built, meta = _rebuild(models / "c3d.pt")
        clips = FaceClips(
            [str(faces)],
            [0],
            meta["frames"],
            meta["stride"],
            meta["crop"],
            meta["size"],
            False,
            built.prepare,
        )
        built.model.eval()
        with torch.no_grad():
            x = torch.stack([clips[i][0] for i in range(len(clips))])
            return torch.softmax(built.model(x), 1).mean(0).numpy()
    if name == "vgg19_blstm_audio":
        if spectro is None:
            return None
        built, _ = _rebuild(models / "vgg19_audio_cnn.pt")
        segments = SpectrogramSegments([str(spectro)], [0], False, built.prepare)
        if not len(segments):
            return None
        x = torch.stack([segments[i][0] for i in range(len(segments))])
        features = _features(built.model, [x], torch.device("cpu")).astype(np.float16)
        return _blstm(models / "vgg19_blstm_audio.pt", features)
    if name == "opensmile_svm":
        if smile is None:
            return None
        with h5py.File(smile, "r") as f:
            if f.attrs["error"] or f.attrs.get("silent", False):
                return None
            features = f["features"][()]
        with open(models / "opensmile_svm.pkl", "rb") as f:
            fitted = pickle.load(f)  # our own file, written by the workflow's svm_opensmile
        return predict_scores(fitted, features[None])[0]
    raise ValueError(f"{name}: no prediction code for this model")


def _stages(path: Path, clip: str, folder: Path, cfg: dict) -> dict[str, Path]:
    """Run the workflow's per-clip stages; return the caches the clip's streams allow."""
    preset = config.preset(cfg)
    exe = cfg.get("ffmpeg")
    info = media.probe(path, exe)
    caches = {}
    if info.video is not None:
        frames = folder / "frames.h5"
        extract_frames(clip, str(path), frames, **preset["frames"], ffmpeg=exe)
        caches["faces"] = folder / "faces.h5"
        align_faces(clip, frames, caches["faces"], **preset["faces"])
    if info.audio is not None:
        audio = folder / "audio.h5"
        extract_audio(
            clip,
            str(path),
            audio,
            preset["audio"]["sample_rate"],
            preset["audio"]["silence_dbfs"],
            exe,
        )
        settings = {
            k: v for k, v in preset["audio"].items() if k not in ("sample_rate", "silence_dbfs")
        }
        caches["spectrograms"] = folder / "spectrograms.h5"
        spectrograms(clip, audio, caches["spectrograms"], **settings)
        caches["opensmile"] = folder / "opensmile.h5"
        opensmile(clip, audio, caches["opensmile"])
    for stage, cache_path in list(caches.items()):
        if cache.attrs(cache_path)["error"]:
            del caches[stage]
    return caches


MODEL_FILES = {
    "c3d": ["c3d.pt"],
    "vgg19_blstm_audio": ["vgg19_audio_cnn.pt", "vgg19_blstm_audio.pt"],
    "opensmile_svm": ["opensmile_svm.pkl"],
}


def _model_files(name: str) -> list[str]:
    if name in MODEL_FILES:
        return MODEL_FILES[name]
    backbone, kind = name.rsplit("_", 1)
    return [f"{backbone}_cnn.pt"] + ([f"{backbone}_blstm.pt"] if kind == "blstm" else [])


def predict(path: str | Path, results: str | Path, cfg: dict) -> dict:
    """Label and fused class scores of one clip; which fused models could see it."""
    path, results = Path(path), Path(results)
    weights_file = results / "fusion" / "weights.json"
    if not weights_file.exists():
        raise ConfigError(f"{weights_file}: no fusion weights; run the workflow first")
    record = json.loads(weights_file.read_text())
    for name in record["models"]:
        for file in _model_files(name):
            if not (results / "models" / file).exists():
                raise ConfigError(f"{results / 'models' / file}: missing model of {name}")
    classes = cfg["labels"]["classes"]
    clip = sheet.clip_id(path)
    with tempfile.TemporaryDirectory() as tmp:
        caches = _stages(path, clip, Path(tmp), cfg)
        scores, used, frame_cnns = [], [], {}
        for name in record["models"]:
            probs = _probabilities(name, results / "models", caches, frame_cnns)
            if probs is not None:
                used.append(name)
            scores.append(np.full(len(classes), 1 / len(classes)) if probs is None else probs)
    weights = [record["weights"][name] for name in record["models"]]
    fused = fusion.fuse([s[None] for s in scores], weights)[0]
    return {
        "clip": clip,
        "label": classes[int(np.argmax(fused))],
        "scores": dict(zip(classes, fused.round(6).tolist(), strict=True)),
        "models_used": [n for n in used if record["weights"][n] > 0],
        "models_unable": [n for n in record["models"] if n not in used],
    }
