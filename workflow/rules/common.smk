import os
import re
from pathlib import Path

from snakemake.utils import validate

import msff.config
import msff.sheet
from msff.codedeps import module_files

# The conda environment's post-deploy script (envs/msff.post-deploy.sh) installs msff from
# here: Snakemake runs a copy of it from the working directory, which may be elsewhere (-d).
# Set, not read, so not an `envvars:` (which the user would have to define).
os.environ.update(MSFF_REPO=str(Path(workflow.basedir).resolve()))

validate(config, schema=msff.config.schema_path("config"))
msff.config.check_label_map(config["labels"])
PRESET = msff.config.preset(config)

SHEET = msff.sheet.read(config["samples"])
validate(SHEET, schema=msff.config.schema_path("clips"))
SHEET = msff.sheet.classify(SHEET, config["labels"])
# Clips that run: the rest (dropped or unknown labels) are listed in the qc table.
CLIPS = SHEET[SHEET.excluded == ""]
_excluded = SHEET[SHEET.excluded != ""]
if len(_excluded):
    # One line per reason, not per clip: a data set may drop hundreds (RAVDESS "calm").
    for _reason, _group in _excluded.groupby("excluded"):
        _ids = ", ".join(_group.index[:3]) + (", ..." if len(_group) > 3 else "")
        logger.warning(
            f"{len(_group)} clips excluded ({_ids}): {_reason}; see results/qc.tsv"
        )


wildcard_constraints:
    clip="|".join(re.escape(c) for c in CLIPS.index) or "(?!)",
    backbone="fer2013|vgg_face|resnet50",


def msff_code(module):
    """The msff source files a stage runs: editing one reruns that stage (see msff/codedeps.py)."""
    return [os.path.relpath(path) for path in module_files(module, workflow.basedir)]


def has_stream(clip, column):
    """Whether the clip has that stream: the sheet says, else assumed (a frame folder has no audio)."""
    if column == "has_audio" and Path(CLIPS.loc[clip, "path"]).is_dir():
        return False
    return bool(CLIPS.loc[clip].get(column, True))


def face_input(clip):
    """detect (MTCNN + alignment) or precropped (the frames are face crops): sheet, else config."""
    return CLIPS.loc[clip].get("face_input") or config["face_input"]


def get_source(wildcards):
    """The clip's file, when it exists; a missing file is the stage's to report, not a DAG error."""
    path = CLIPS.loc[wildcards.clip, "path"]
    return [path] if Path(path).exists() else []


def get_source_path(wildcards):
    return CLIPS.loc[wildcards.clip, "path"]


def clip_caches(clip):
    """Stage name -> cache file of every stage the clip's streams allow."""
    caches = {}
    if has_stream(clip, "has_video"):
        caches["faces"] = f"results/faces/{clip}.h5"
    if has_stream(clip, "has_audio"):
        caches["audio"] = f"results/audio/{clip}.h5"
        caches["spectrograms"] = f"results/spectrograms/{clip}.h5"
        caches["opensmile"] = f"results/opensmile/{clip}.h5"
    return caches


def get_qc_caches(wildcards=None):
    return {clip: clip_caches(clip) for clip in CLIPS.index}


def get_qc_input(wildcards):
    return [path for caches in get_qc_caches().values() for path in caches.values()]


CLASSES = config["labels"]["classes"]


def clip_records():
    """Clip, class, split and speaker of every clip that runs (what model rules need)."""
    return CLIPS[["clip", "class", "split", "speaker"]].to_dict("records")


# Every neural head trains with these: config train, the preset's optimiser, rate and
# epochs, the seed.
TRAIN = dict(
    config["train"],
    optimizer=PRESET["models"]["optimizer"],
    lr=PRESET["models"]["lr"],
    epochs=PRESET["models"]["epochs"],
    seed=config["seed"],
)


def audio_clips():
    return [clip for clip in CLIPS.index if has_stream(clip, "has_audio")]


def video_clips():
    return [clip for clip in CLIPS.index if has_stream(clip, "has_video")]


def get_opensmile_features(wildcards):
    return [f"results/opensmile/{clip}.h5" for clip in audio_clips()]


def get_face_caches(wildcards):
    return [f"results/faces/{clip}.h5" for clip in video_clips()]


def face_cache_map(wildcards):
    return {clip: f"results/faces/{clip}.h5" for clip in video_clips()}


def get_spectrogram_caches(wildcards):
    return [f"results/spectrograms/{clip}.h5" for clip in audio_clips()]


def spectrogram_cache_map(wildcards):
    return {clip: f"results/spectrograms/{clip}.h5" for clip in audio_clips()}


def model_names():
    """Every model config turns on, by the name of its scores file."""
    models = config["models"]
    names = []
    for backbone in models["face_backbones"]:
        names += [f"{backbone}_frames", f"{backbone}_blstm"]
    if models["c3d"]:
        names.append("c3d")
    if models["audio_cnn"]:
        names.append("vgg19_blstm_audio")
    if models["opensmile_svm"]:
        names.append("opensmile_svm")
    return names


def weighting_features():
    """The run's feature caches the BLSTMs read, by source (rule class_weighting)."""
    features = {
        b: f"results/features/{b}.h5" for b in config["models"]["face_backbones"]
    }
    if config["models"]["audio_cnn"]:
        features["vgg19_audio"] = "results/features/vgg19_audio.h5"
    return features


def provenance_files():
    """Model name -> provenance JSON (with its training history) of every neural model."""
    models = config["models"]
    files = {}
    for backbone in models["face_backbones"]:
        files[f"{backbone}_cnn"] = f"results/models/{backbone}_cnn.json"
        files[f"{backbone}_blstm"] = f"results/models/{backbone}_blstm.json"
    if models["c3d"]:
        files["c3d"] = "results/models/c3d.json"
    if models["audio_cnn"]:
        files["vgg19_audio_cnn"] = "results/models/vgg19_audio_cnn.json"
        files["vgg19_blstm_audio"] = "results/models/vgg19_blstm_audio.json"
    return files


def model_scores():
    return [f"results/scores/{name}.tsv" for name in model_names()]


_unknown = sorted(set(config["fusion"]["models"]) - set(model_names()))
if _unknown:
    raise ValueError(
        f"config fusion.models: {_unknown} are not models this config runs: {model_names()}"
    )


def get_fusion_scores(wildcards):
    return [f"results/scores/{name}.tsv" for name in config["fusion"]["models"]]


def get_all_scores(wildcards):
    return [*model_scores(), "results/scores/fusion.tsv"]


def get_final_output():
    outputs = [
        "results/qc.tsv",
        "results/predictions.tsv",
        "results/evaluation/table1.tsv",
        "results/evaluation/table2.tsv",
        "results/evaluation/class_weighting.tsv",
        "results/plots/training_curves.png",
        "results/plots/class_recall.png",
        "results/plots/fusion_weights.png",
        "results/plots/qc.png",
    ]
    if config["fusion"]["submission"]:
        outputs.append("results/submission")
    return outputs
