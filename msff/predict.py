"""Prediction on clips the workflow never saw: a run's fused models, or FER2013 zero-shot.

A clip goes through the same stage functions as the workflow's clips (decode, faces,
audio, spectrograms, openSMILE), into a temporary folder, then its caches are scored:

- **with a workflow run** (``results/``): every fused model of
  ``results/fusion/weights.json`` scores the clip with its head's ``infer`` (the code the
  workflow's rules train with: :mod:`msff.heads`), and their class scores are fused with
  those weights. The run's own config comes from its models' provenance, so the stages
  run as they did for the training clips. A model that cannot see the clip (no face
  found, no or silent audio) contributes uniform scores, as in the workflow, and is
  reported as unable. Speaker-normalised models (``svm_speaker_norm``,
  ``blstm_speaker_norm``, ``audio_cnn_speaker_norm``) standardise the clip by its
  speaker's statistics in the run when ``speaker`` names one they kept, or one learnt
  from several new clips (:meth:`Predictor.enrol`), else as a speaker of one clip.
- **without one**: the FER2013 network that ships with msff, whose own classifier has
  exactly the seven classes, scores the clip's faces zero-shot (nothing trained on the
  user's data; no audio model). Its scores are the mean over the clip's found faces.

Every model is loaded once per call (:class:`RunModels`, :class:`ZeroShot`), on the
device asked for; faces and segments are read batch by batch, a backbone's features go
to a temporary HDF5 file (float16, as the workflow stores them) for its BLSTM to read
window batch by window batch, and only sums of class scores are kept, so memory does not
grow with a clip's length. ``per_frame`` also gives each decoded frame's class scores with its
time (the frame CNN's, or FER2013's) and each heard audio segment's (the spectrogram
CNN's).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from msff import cache, config, fusion, media, registry, sheet
from msff.errors import ConfigError, MsffError
from msff.heads import audio_cnn, blstm, c3d, common, frame_cnn, hog_svm, svm, zeroshot
from msff.logs import log
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces, precropped_faces
from msff.stages.media import extract_audio, extract_frames


@dataclass
class Prediction:
    """One clip's label and scores, which models saw it, and per-frame rows when asked."""

    path: str
    clip: str
    label: str
    scores: dict[str, float]
    mode: str  # "fused" (a workflow run's models) or "zero-shot" (FER2013, untrained)
    models_used: list[str]
    models_unable: list[str]
    frames: list[dict] = field(default_factory=list)
    # What the stages noted (no face found, no audio stream, a damaged file, ...). When none
    # of the fused models could score the clip, ``label`` is "" and ``scores`` are uniform.
    note: str = ""


def frame_rows(faces_h5: Path, model: str, probs: np.ndarray, classes: list[str]) -> list[dict]:
    """A row per decoded frame: its time, whether a face was found, and ``probs``' row.

    ``probs`` holds one row per found face, in frame order; frames without a face get
    empty scores.
    """
    with h5py.File(faces_h5, "r") as f:
        found = f["found"][()]
        index = f["frame_index"][()]
        fps = float(f.attrs.get("fps") or 0)
    rows, found_at = [], iter(probs)
    for i, is_found in zip(index, found, strict=True):
        scores = next(found_at) if is_found else np.full(len(classes), np.nan)
        rows.append(
            dict(stream="face", model=model, index=int(i))
            | dict(time_s=round(i / fps, 3) if fps else np.nan, found=bool(is_found))
            | dict(zip(classes, np.round(scores, 6).tolist(), strict=True))
        )
    return rows


def segment_rows(
    spectrograms_h5: Path, model: str, probs: np.ndarray, classes: list[str]
) -> list[dict]:
    """A row per heard audio segment (scale 1.0): its start time and ``probs``' row."""
    with h5py.File(spectrograms_h5, "r") as f:
        starts = f["segment_start_s"][()]
    return [
        dict(stream="audio", model=model, index=k, time_s=round(float(t), 3), found=True)
        | dict(zip(classes, np.round(p, 6).tolist(), strict=True))
        for k, (t, p) in enumerate(zip(starts, probs, strict=True))
    ]


@dataclass
class BackbonePass:
    """One backbone pass over a clip: its fc7 features on disk, its class scores' mean."""

    features_h5: Path
    mean: np.ndarray
    rows: np.ndarray | None  # every item's class scores, when asked for (per frame)

    def sequence_scores(self, loaded_blstm, speaker: str | None = None) -> np.ndarray | None:
        """The BLSTM's class scores over the pass's features, read window batch by batch."""
        with h5py.File(self.features_h5, "r") as f:
            return blstm.infer(loaded_blstm, f["features"], speaker=speaker)


def backbone_pass(batches, features_h5: Path, keep_rows: bool) -> BackbonePass | None:
    """Run a head's ``infer`` batches through, features to disk; None when it had no item.

    The features go to ``features_h5`` as float16 (as the workflow stores them) and only
    the class scores' sum is kept, so memory does not grow with the clip's length.
    """
    n, total, rows = 0, None, []
    with h5py.File(features_h5, "w") as f:
        for feats, probs in batches:
            if total is None:
                width = feats.shape[1]
                data = f.create_dataset(
                    "features", (0, width), np.float16, maxshape=(None, width), chunks=(256, width)
                )
                total = np.zeros(probs.shape[1])
            data.resize(n + len(feats), 0)
            data[n:] = feats
            n += len(feats)
            total += probs.sum(0)
            if keep_rows:
                rows.append(probs)
    if not n:
        return None
    return BackbonePass(
        features_h5, (total / n).astype(np.float32), np.concatenate(rows) if keep_rows else None
    )


def _features(batches) -> np.ndarray:
    """A head's ``infer`` batches' features, as one (n, width) array; (0, 0): no item."""
    parts = [features for features, _ in batches]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


class RunModels:
    """The fused models of one workflow run, each loaded once, scoring clip caches."""

    def __init__(self, results: str | Path, names: list[str], device: str = "cpu"):
        folder = Path(results) / "models"
        self.names = names
        self.loaded: dict[str, object] = {}
        for name in names:
            try:
                self._load(name, folder, device)
            except MsffError:
                raise
            except Exception as exc:  # a file cut short or overwritten: name it, not a trace
                files = ", ".join(str(folder / f) for f in registry.model(name).files)
                raise ConfigError(
                    f"{files}: the run's {name} cannot be loaded ({type(exc).__name__}: {exc})"
                ) from exc

    def _load(self, name: str, folder: Path, device: str) -> None:
        """Load one fused model's files into ``self.loaded``."""
        model = registry.model(name)
        files = [folder / f for f in model.files]
        if model.head in ("frame_cnn", "blstm"):
            # Both read one backbone pass: its CNN is loaded once, under the backbone.
            cnn = f"{model.backbone}_cnn"
            if cnn not in self.loaded:
                self.loaded[cnn] = frame_cnn.load(folder / f"{cnn}.pt", device)
            if model.head == "blstm":
                self.loaded[name] = blstm.load(files[1])
        elif model.head == "zeroshot":
            self.loaded[name] = zeroshot.load(files[0])
        elif model.head == "c3d":
            self.loaded[name] = c3d.load(files[0], device)
        elif model.head == "audio_cnn":
            self.loaded[name] = (audio_cnn.load(files[0], device), blstm.load(files[1]))
        elif model.head == "svm":
            self.loaded[name] = svm.load(files[0])
        elif model.head == "hog_svm":
            self.loaded[name] = hog_svm.load(files[0])
        else:
            raise ConfigError(f"{name}: no prediction for a model of head {model.head!r}")

    def needs_enrolment(self, speaker: str) -> set[str]:
        """The caches a clip needs for the run's models to learn ``speaker`` (:meth:`enrol`).

        ``faces``, ``spectrograms``, ``opensmile``: of the speaker-normalised models that do
        not keep ``speaker``; none when every model keeps it or none is normalised.
        """
        needed = set()
        for name in self.names:
            model = registry.model(name)
            loaded = self.loaded.get(name)
            if model.head == "svm":
                unknown = svm.needs_enrolment(loaded, speaker)
            elif model.head == "audio_cnn":
                unknown = any(common.needs_enrolment(part[1], speaker) for part in loaded)
            elif model.head == "blstm":
                unknown = common.needs_enrolment(loaded[1], speaker)
            else:
                unknown = False
            if unknown:
                needed.add(model.needs)
        return needed

    def enrol(self, speaker: str, clip_caches: list[dict[str, Path]]) -> list[str]:
        """Learn ``speaker`` from these clips' caches; the names of the models that did.

        Every speaker-normalised model that does not keep ``speaker`` learns its
        statistics over the clips (:mod:`msff.speakers`). A spectrogram CNN learns first:
        its BLSTM learns from the features the CNN gives with the speaker's levels, as in
        the workflow.
        """
        learnt = []
        for name in self.names:
            model = registry.model(name)
            paths = [c[model.needs] for c in clip_caches if model.needs in c]
            loaded, done = self.loaded.get(name), False
            if model.head == "svm":
                done = svm.enrol(loaded, speaker, paths)
            elif model.head == "audio_cnn":
                done = audio_cnn.enrol(loaded[0], speaker, paths)
                if common.needs_enrolment(loaded[1][1], speaker):
                    runs = [audio_cnn.infer(loaded[0], p, speaker=speaker) for p in paths]
                    done = blstm.enrol(loaded[1], speaker, [_features(r) for r in runs]) or done
            elif model.head == "blstm" and common.needs_enrolment(loaded[1], speaker):
                cnn = self.loaded[f"{model.backbone}_cnn"]
                runs = [frame_cnn.infer(cnn, p) for p in paths]
                done = blstm.enrol(loaded, speaker, [_features(r) for r in runs])
            if done:
                learnt.append(name)
        return learnt

    def scores(
        self,
        caches: dict[str, Path],
        classes: list[str],
        folder: Path,
        per_frame: bool = False,
        speaker: str | None = None,
    ) -> tuple[dict[str, np.ndarray | None], list[dict]]:
        """Each model's class scores for one clip (None: cannot see it), and frame rows.

        ``folder``: where the backbone passes' features are written (a temporary one).
        ``speaker``: the clip's speaker, for speaker-normalised models (see ``Predictor``).
        """
        out, passes, rows = {}, {}, []
        for name in self.names:
            model = registry.model(name)
            cache_path = caches.get(model.needs)
            if cache_path is None:
                out[name] = None
            elif model.head in ("frame_cnn", "blstm"):
                cnn = f"{model.backbone}_cnn"
                if cnn not in passes:  # one backbone pass serves both
                    batches = frame_cnn.infer(self.loaded[cnn], cache_path)
                    passes[cnn] = backbone_pass(batches, folder / f"{cnn}.h5", per_frame)
                    if per_frame and passes[cnn] is not None:
                        rows += frame_rows(
                            cache_path, f"{model.backbone}_frames", passes[cnn].rows, classes
                        )
                passed = passes[cnn]
                if passed is None:
                    out[name] = None
                elif model.head == "frame_cnn":
                    out[name] = passed.mean
                else:
                    out[name] = passed.sequence_scores(self.loaded[name], speaker)
            elif model.head == "zeroshot":
                out[name] = zeroshot.infer(self.loaded[name], cache_path)
            elif model.head == "c3d":
                out[name] = c3d.infer(self.loaded[name], cache_path)
            elif model.head == "hog_svm":
                out[name] = hog_svm.infer(self.loaded[name], cache_path)
            elif model.head == "audio_cnn":
                cnn, sequence = self.loaded[name]
                batches = audio_cnn.infer(cnn, cache_path, speaker=speaker)
                passed = backbone_pass(batches, folder / f"{name}.h5", per_frame)
                out[name] = None if passed is None else passed.sequence_scores(sequence, speaker)
                if per_frame and passed is not None:
                    rows += segment_rows(cache_path, "vgg19_audio_cnn", passed.rows, classes)
            else:  # svm
                out[name] = svm.infer(self.loaded[name], cache_path, speaker)
        return out, rows


class ZeroShot:
    """FER2013's own classifier on a clip's faces: predictions without a workflow run."""

    name = "fer2013_zeroshot"

    def __init__(self, classes: list[str], weights: str | None = None):
        from msff.models.mini_xception import load_fer2013

        self.names = [self.name]
        self.classes = classes
        self.model = load_fer2013(weights).eval()

    def scores(
        self,
        caches: dict[str, Path],
        classes: list[str],
        folder: Path,
        per_frame: bool = False,
        speaker: str | None = None,
    ) -> tuple[dict[str, np.ndarray | None], list[dict]]:
        """FER2013's class scores of the clip (None: no face found), and frame rows.

        Without frame rows only the scores' sum is kept (:func:`zeroshot.clip_scores`), so
        memory does not grow with the clip's length; with them, the one pass that gives the
        rows gives the sum. ``folder`` and ``speaker`` are unused (no features are written;
        nothing is normalised by speaker).
        """
        faces = caches.get("faces")
        if not faces:
            return {self.name: None}, []
        if not per_frame:
            return {self.name: zeroshot.clip_scores(self.model, faces, classes, classes)}, []
        fer = list(zeroshot.fer2013_probabilities(self.model, faces))
        if not fer:
            return {self.name: None}, []
        fer = np.concatenate(fer)
        probs = zeroshot.as_classes(fer.sum(0, np.float64), classes, classes)
        rows = frame_rows(faces, self.name, zeroshot.as_classes(fer, classes, classes), classes)
        return {self.name: probs}, rows


def run_config(results: str | Path, fallback: dict | None = None) -> dict:
    """The config a run trained with, from its models' provenance; else ``fallback``."""
    for path in sorted((Path(results) / "models").glob("*.json")):
        recorded = json.loads(path.read_text()).get("config")
        if recorded:
            return recorded
    if fallback is None:
        raise ConfigError(f"{results}/models: no provenance records the run's config")
    return fallback


def default_config() -> dict:
    """The repository's config.yaml (the workflow's defaults), for predictions without a run."""
    path = Path(__file__).resolve().parents[1] / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{path}: no config.yaml beside the msff package (installed without its "
            "repository); pass --config"
        )
    return config.load(path)


def _stages(
    path: Path, clip: str, folder: Path, cfg: dict, audio: bool = True, video: bool = True
) -> tuple[dict[str, Path], list[str]]:
    """Run the workflow's per-clip stages (``audio``, ``video``: those of that stream).

    Returns the caches the clip's streams allow, and what the models should know of the
    rest: each cache's recorded error or note, the streams the file lacks.
    """
    preset = config.preset(cfg)
    exe = cfg.get("ffmpeg")
    info = media.probe(path, exe)
    caches = {}
    problems = [] if info.video is not None else ["no video stream"]
    if audio and info.audio is None:
        problems.append("no audio stream")
    if video and info.video is not None:
        frames = folder / "frames.h5"
        extract_frames(clip, str(path), frames, **preset["frames"], ffmpeg=exe)
        caches["faces"] = folder / "faces.h5"
        if cfg.get("face_input") == "precropped":
            precropped_faces(clip, frames, caches["faces"], preset["faces"]["size"])
        else:
            align_faces(clip, frames, caches["faces"], **preset["faces"])
        frames.unlink()  # the faces cache is all the models read: free the disk early
    if audio and info.audio is not None:
        audio_h5 = folder / "audio.h5"
        extract_audio(
            clip,
            str(path),
            audio_h5,
            preset["audio"]["sample_rate"],
            preset["audio"]["silence_dbfs"],
            exe,
        )
        settings = {
            k: v for k, v in preset["audio"].items() if k not in ("sample_rate", "silence_dbfs")
        }
        caches["spectrograms"] = folder / "spectrograms.h5"
        spectrograms(clip, audio_h5, caches["spectrograms"], **settings)
        caches["opensmile"] = folder / "opensmile.h5"
        opensmile(clip, audio_h5, caches["opensmile"], preset["models"]["svm_features"])
    for stage, cache_path in list(caches.items()):
        attrs = cache.attrs(cache_path)
        if attrs["error"]:
            del caches[stage]
        # A cache's error, or its note (no face found, a silent track, a damaged file).
        if attrs["error"] or attrs.get("note"):
            problems.append(f"{stage}: {attrs['error'] or attrs['note']}")
    return caches, list(dict.fromkeys(problems))


def fusion_record(results: str | Path) -> dict:
    """The run's fusion weights, after checking every fused model's files are there."""
    results = Path(results)
    weights_file = results / "fusion" / "weights.json"
    if not weights_file.exists():
        raise ConfigError(f"{weights_file}: no fusion weights; run the workflow first")
    try:
        record = json.loads(weights_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{weights_file}: not the run's fusion weights ({exc})") from None
    for name in record["models"]:
        for file in registry.model(name).files:
            if not (results / "models" / file).exists():
                raise ConfigError(f"{results / 'models' / file}: missing model of {name}")
    return record


class Predictor:
    """Predicts clips one after another with models loaded once.

    ``results``: a workflow run's results folder (its fused models and its own config);
    None: FER2013 zero-shot on the faces, with ``cfg`` (by default the repository's
    config.yaml) deciding how frames are decoded and faces found.
    """

    def __init__(
        self, results: str | Path | None = None, cfg: dict | None = None, device: str = "cpu"
    ):
        if results is not None:
            record = fusion_record(results)
            self.cfg = cfg or run_config(results)
            self.weights = record["weights"]
            self.models = RunModels(results, record["models"], device)
            self.mode = "fused"
        else:
            self.cfg = cfg or default_config()
            self.models = ZeroShot(self.cfg["labels"]["classes"], self.cfg["weights"]["fer2013"])
            self.weights = {ZeroShot.name: 1.0}
            self.mode = "zero-shot"
        self.classes = self.cfg["labels"]["classes"]
        self.needs_audio = any(
            registry.model(n).needs in ("spectrograms", "opensmile") for n in self.models.names
        )

    def enrol(self, speaker: str, paths: list[str | Path]) -> list[str]:
        """Learn a speaker the run never saw from its clips, for ``__call__``'s ``speaker``.

        The run's speaker-normalised models then standardise a clip of ``speaker`` by that
        speaker's statistics over all of ``paths``, as the workflow does for a speaker of
        its sheet, instead of scoring each clip alone (which costs accuracy:
        bench/README.md, "Speaker normalisation"). A speaker the run keeps stays as the run
        has it. A file that cannot be read plays no part. The clips' caches are held in a
        temporary folder meanwhile. Returns the models that learnt the speaker.
        """
        needed = self.models.needs_enrolment(speaker) if self.mode == "fused" else set()
        if not needed:
            return []
        audio, video = bool(needed - {"faces"}), "faces" in needed
        with tempfile.TemporaryDirectory() as tmp:
            clip_caches = []
            for k, path in enumerate(paths):
                folder = Path(tmp) / str(k)
                folder.mkdir()
                try:
                    caches, _ = _stages(
                        Path(path), sheet.clip_id(Path(path)), folder, self.cfg, audio, video
                    )
                except MsffError as exc:
                    log.warning("enrolling speaker %s: %s left out: %s", speaker, path, exc)
                    continue
                clip_caches.append(caches)
            return self.models.enrol(speaker, clip_caches)

    def __call__(
        self, path: str | Path, per_frame: bool = False, speaker: str | None = None
    ) -> Prediction:
        """Label and fused class scores of one clip; which models could see it.

        ``speaker``: who speaks (or is filmed) in the clip, for the run's speaker-normalised
        models (``svm_speaker_norm``, ``blstm_speaker_norm``, ``audio_cnn_speaker_norm``): a
        speaker of the run's sheet with 2 or more clips lends the clip its statistics there,
        so a clip of the run gets the workflow's scores, and so does a speaker learnt by
        :meth:`enrol`; any other clip is a speaker of one clip.
        """
        path = Path(path)
        clip = sheet.clip_id(path)
        with tempfile.TemporaryDirectory() as tmp:
            caches, problems = _stages(path, clip, Path(tmp), self.cfg, audio=self.needs_audio)
            probs, rows = self.models.scores(caches, self.classes, Path(tmp), per_frame, speaker)
        n = len(self.classes)
        names = self.models.names
        scores = [np.full(n, 1 / n) if probs[m] is None else probs[m] for m in names]
        seen = np.array([[probs[m] is not None] for m in names])
        weights = [self.weights[m] for m in names]
        fused, (how,) = fusion.fuse_seen([s[None] for s in scores], weights, seen)
        fused = fused[0]
        # As the workflow's fuse stage: the weighted models that saw the clip, else all
        # fused models that did, equally (msff.fusion.fuse_seen).
        used = [m for m in names if probs[m] is not None and (how == "equal" or self.weights[m])]
        unable = [m for m in names if probs[m] is None]
        note = "; ".join(problems)
        if how == "equal":
            note = "; ".join(filter(None, [note, fusion.EQUAL_NOTE + ", ".join(used)]))
        elif how == "none":  # uniform scores: their argmax would be the first class
            note = f"no fused model could score it ({note or ', '.join(unable)})"
        return Prediction(
            path=str(path),
            clip=clip,
            label=self.classes[int(np.argmax(fused))] if how != "none" else "",
            scores=dict(zip(self.classes, fused.round(6).tolist(), strict=True)),
            mode=self.mode,
            models_used=used,
            models_unable=unable,
            frames=[dict(path=str(path), clip=clip) | row for row in rows],
            note=note,
        )


def predict(path: str | Path, results: str | Path | None, cfg: dict | None = None) -> dict:
    """One clip's prediction as a dict (a one-off; :class:`Predictor` loads models once)."""
    result = Predictor(results, cfg)(path)
    return {
        "clip": result.clip,
        "label": result.label,
        "scores": result.scores,
        "models_used": result.models_used,
        "models_unable": result.models_unable,
    }
