"""Prediction on clips the workflow never saw, with the models a workflow run trained.

A new clip goes through the same stage functions as the workflow's clips, then every
fused model of ``results/fusion/weights.json`` scores it with its head's ``infer`` (the
code the workflow's rules train with: :mod:`msff.heads`), and their class scores are
fused with those weights. The run's own config comes from its models' provenance, so
the stages run as they did for the training clips. A model that cannot see the clip (no
face found, no or silent audio) contributes uniform scores, as in the workflow, and is
reported as unused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from msff import cache, config, fusion, media, registry, sheet
from msff.errors import ConfigError
from msff.heads import audio_cnn, blstm, c3d, frame_cnn, svm, zeroshot
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces, precropped_faces
from msff.stages.media import extract_audio, extract_frames


class RunModels:
    """The trained models of one workflow run, each loaded once, scoring clip caches."""

    def __init__(self, results: str | Path):
        self.folder = Path(results) / "models"
        self._svm = None

    def path(self, name: str) -> Path:
        """A model file of the run."""
        return self.folder / name

    def scores(self, names: list[str], caches: dict[str, Path]) -> dict[str, np.ndarray | None]:
        """Each model's class scores for one clip, or None where it cannot see the clip."""
        out, frame_passes = {}, {}
        for name in names:
            model = registry.model(name)
            cache_path = caches.get(model.needs)
            if cache_path is None:
                out[name] = None
            elif model.head in ("frame_cnn", "blstm"):
                if model.backbone not in frame_passes:  # one backbone pass serves both
                    frame_passes[model.backbone] = frame_cnn.infer(
                        self.path(model.files[0]), cache_path
                    )
                passed = frame_passes[model.backbone]
                if passed is None:
                    out[name] = None
                elif model.head == "frame_cnn":
                    out[name] = passed[1].mean(0)
                else:
                    out[name] = blstm.infer(self.path(model.files[1]), passed[0])
            elif model.head == "zeroshot":
                out[name] = zeroshot.infer(self.path(model.files[0]), cache_path)
            elif model.head == "c3d":
                out[name] = c3d.infer(self.path(model.files[0]), cache_path)
            elif model.head == "audio_cnn":
                out[name] = audio_cnn.infer(
                    self.path(model.files[0]), self.path(model.files[1]), cache_path
                )
            elif model.head == "svm":
                if self._svm is None:
                    self._svm = svm.load(self.path(model.files[0]))
                out[name] = svm.infer(self._svm, cache_path)
            else:
                raise ConfigError(f"{name}: no prediction for a model of head {model.head!r}")
        return out


def run_config(results: str | Path, fallback: dict | None = None) -> dict:
    """The config a run trained with, from its models' provenance; else ``fallback``."""
    for path in sorted((Path(results) / "models").glob("*.json")):
        recorded = json.loads(path.read_text()).get("config")
        if recorded:
            return recorded
    if fallback is None:
        raise ConfigError(f"{results}/models: no provenance records the run's config")
    return fallback


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
        if cfg.get("face_input") == "precropped":
            precropped_faces(clip, frames, caches["faces"], preset["faces"]["size"])
        else:
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


def fusion_record(results: str | Path) -> dict:
    """The run's fusion weights, after checking every fused model's files are there."""
    results = Path(results)
    weights_file = results / "fusion" / "weights.json"
    if not weights_file.exists():
        raise ConfigError(f"{weights_file}: no fusion weights; run the workflow first")
    record = json.loads(weights_file.read_text())
    for name in record["models"]:
        for file in registry.model(name).files:
            if not (results / "models" / file).exists():
                raise ConfigError(f"{results / 'models' / file}: missing model of {name}")
    return record


def predict(path: str | Path, results: str | Path, cfg: dict) -> dict:
    """Label and fused class scores of one clip; which fused models could see it."""
    path, results = Path(path), Path(results)
    record = fusion_record(results)
    classes = cfg["labels"]["classes"]
    clip = sheet.clip_id(path)
    with tempfile.TemporaryDirectory() as tmp:
        caches = _stages(path, clip, Path(tmp), cfg)
        probs = RunModels(results).scores(record["models"], caches)
    used = [n for n, p in probs.items() if p is not None]
    scores = [np.full(len(classes), 1 / len(classes)) if p is None else p for p in probs.values()]
    weights = [record["weights"][name] for name in record["models"]]
    fused = fusion.fuse([s[None] for s in scores], weights)[0]
    return {
        "clip": clip,
        "label": classes[int(np.argmax(fused))],
        "scores": dict(zip(classes, fused.round(6).tolist(), strict=True)),
        "models_used": [n for n in used if record["weights"][n] > 0],
        "models_unable": [n for n in record["models"] if n not in used],
    }
