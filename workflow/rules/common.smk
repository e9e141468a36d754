import os
from functools import cache
from pathlib import Path

import msff.config
import msff.registry
import msff.shards
import msff.sheet
from msff.codedeps import module_files

# The conda environment's post-deploy script (envs/msff.post-deploy.sh) installs msff from
# here: Snakemake runs a copy of it from the working directory, which may be elsewhere (-d).
# Set, not read, so not an `envvars:` (which the user would have to define).
os.environ.update(MSFF_REPO=str(Path(workflow.basedir).resolve()))

# The schema's lists of backbones and models come from the registry (msff/registry.py).
msff.config.validate(config, "config", "config")
msff.config.check_label_map(config["labels"])
msff.config.check_weight_files(config)
PRESET = msff.config.preset(config)

# What each job asks of the machine or the cluster (Snakemake resources): memory in MB,
# minutes (a retry after a time-out gets `attempt` times as long), GPUs. Measured at the
# paper preset with margin (benchmarks/, bench/README.md); the Slurm profile adds only the
# site's settings (partition, account).
GPUS = config["gpus_per_job"]


def shard_minutes(minutes_per_clip):
    """A per-clip stage's time limit: its minutes per clip times the clips of the shard."""
    return (
        lambda wildcards, attempt: minutes_per_clip
        * attempt
        * len(SHARDS[int(wildcards.shard)])
    )


PER_CLIP_RESOURCES = dict(mem_mb=2000, runtime=shard_minutes(1))
# A clip that kills its shard's process (out of memory, a crash in native code) is done
# again once, then recorded as bad by the next attempt (msff/shards.py): the per-clip
# rules are tried three times, so one run gets past such a clip. A rule's `retries`
# replaces the profile's (and --retries) for that rule.
SHARD_RETRIES = 2
# MTCNN over every frame: about 1.1 GB resident for a 1280x720 clip at the paper preset.
ALIGN_FACES_RESOURCES = dict(
    mem_mb=4000,
    runtime=shard_minutes(3),
    gpu=GPUS if PRESET["faces"]["device"] == "cuda" else 0,
)
TRAINING_RESOURCES = dict(
    mem_mb=8000, runtime=lambda wildcards, attempt: 60 * attempt, gpu=GPUS
)
# The SVM, qc, fusion, evaluation, plots and tables.
SMALL_JOB_RESOURCES = dict(mem_mb=4000, runtime=lambda wildcards, attempt: 10 * attempt)

# Read and checked row by row (clips.schema.yaml): a bad row is named by its line and clip.
SHEET = msff.sheet.read(config["samples"])
SHEET = msff.sheet.classify(SHEET, config["labels"])
# Clips that run: the rest (dropped or unknown labels) are listed in the qc table.
CLIPS = msff.sheet.running(SHEET, config["samples"])
_excluded = SHEET[SHEET.excluded != ""]
if len(_excluded):
    # One line per reason, not per clip: a data set may drop hundreds (RAVDESS "calm").
    for _reason, _group in _excluded.groupby("excluded"):
        _ids = ", ".join(_group.index[:3]) + (", ..." if len(_group) > 3 else "")
        logger.warning(
            f"{len(_group)} clips excluded ({_ids}): {_reason}; see results/qc.tsv"
        )


# The per-clip stages run one job per shard of clips, each clip's shard fixed by a hash
# of its id (msff/shards.py): adding a clip reruns its shard, which does only its work.
SHARDS = msff.shards.shard_clips(CLIPS.index, config["preprocess_shards"])


wildcard_constraints:
    shard=r"\d+",
    fold=r"\d+",
    experiment="crossval|out_of_fold",
    backbone="|".join(msff.registry.FRAME_BACKBONES),


def msff_code(*modules):
    """The msff source files a stage runs: editing one reruns that stage (see msff/codedeps.py)."""
    files = {
        path for module in modules for path in module_files(module, workflow.basedir)
    }
    return sorted(os.path.relpath(path) for path in files)


def frame_cnn_code(wildcards):
    """The frame CNN head's files and its backbone's (msff/registry.py), nothing else."""
    return msff_code(
        "msff.heads.frame_cnn", msff.registry.FRAME_BACKBONES[wildcards.backbone]
    )


def has_stream(clip, column):
    """Whether the clip has that stream: the sheet says, else assumed (a frame folder has no audio)."""
    if column == "has_audio" and Path(CLIPS.loc[clip, "path"]).is_dir():
        return False
    return bool(CLIPS.loc[clip].get(column, True))


def face_input(clip):
    """detect (MTCNN + alignment) or precropped (the frames are face crops): sheet, else config."""
    return CLIPS.loc[clip].get("face_input") or config["face_input"]


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


# Which clips each per-clip stage runs on, and the cache it writes for one.
STAGE_STREAM = dict(
    align_faces="has_video",
    extract_audio="has_audio",
    spectrograms="has_audio",
    opensmile="has_audio",
)
STAGE_CACHE = dict(
    align_faces="results/faces/{clip}.h5",
    extract_audio="results/audio/{clip}.h5",
    spectrograms="results/spectrograms/{clip}.h5",
    opensmile="results/opensmile/{clip}.h5",
)


def shard_jobs(stage, shard):
    """The clips of one shard a stage works on, as msff.shards.run_shard takes them."""
    jobs = []
    for clip in SHARDS[int(shard)]:
        if not has_stream(clip, STAGE_STREAM[stage]):
            continue
        source = CLIPS.loc[clip, "path"]
        # What the clip's cache is made from: the source, or the audio cache.
        upstream = (
            source
            if stage in ("align_faces", "extract_audio")
            else STAGE_CACHE["extract_audio"].format(clip=clip)
        )
        jobs.append(
            dict(
                clip=clip,
                source=source,
                inputs=[upstream],
                out=STAGE_CACHE[stage].format(clip=clip),
                log=f"logs/{stage}/{clip}.log",
            )
        )
        if stage == "align_faces":
            jobs[-1].update(
                frames=f"results/frames/{clip}.h5", face_input=face_input(clip)
            )
    return jobs


def stage_manifests(stage):
    """The manifests of every shard a stage has clips in: what a rule reading its caches needs."""
    return [
        f"results/shards/{stage}/{shard}.tsv"
        for shard in SHARDS
        if any(has_stream(clip, STAGE_STREAM[stage]) for clip in SHARDS[shard])
    ]


def shard_sources(stage, shard):
    """The source files of a shard's clips that exist: a missing one is its clip's error, not the DAG's."""
    return [
        job["source"]
        for job in shard_jobs(stage, shard)
        if Path(job["source"]).exists()
    ]


def get_qc_input(wildcards):
    return [path for stage in STAGE_CACHE for path in stage_manifests(stage)]


CLASSES = config["labels"]["classes"]


def clip_records():
    """Clip, class, split and speaker of every clip that runs (what model rules need)."""
    return CLIPS[["clip", "class", "split", "speaker"]].to_dict("records")


# Each head's exact stage arguments (msff.config.head_arguments): a rule's params are
# its own head's, so a preset value reruns only the rules that use it.
HEADS = msff.config.head_arguments(config)


def audio_clips():
    return [clip for clip in CLIPS.index if has_stream(clip, "has_audio")]


def video_clips():
    return [clip for clip in CLIPS.index if has_stream(clip, "has_video")]


def get_opensmile_features(wildcards):
    return stage_manifests("opensmile")


def opensmile_cache_map(wildcards):
    return {clip: f"results/opensmile/{clip}.h5" for clip in audio_clips()}


def get_face_caches(wildcards):
    return stage_manifests("align_faces")


def face_cache_map(wildcards):
    return {clip: f"results/faces/{clip}.h5" for clip in video_clips()}


def get_spectrogram_caches(wildcards):
    return stage_manifests("spectrograms")


def spectrogram_cache_map(wildcards):
    return {clip: f"results/spectrograms/{clip}.h5" for clip in audio_clips()}


# The models this config turns on, by the name of their scores files (msff/registry.py).
MODELS = msff.registry.models(config["models"])


def model_names():
    return [model.name for model in MODELS]


def trained_models():
    """The run's trained models, which class weighting and the out-of-fold search retrain."""
    return [m.name for m in MODELS if m.head != "zeroshot"]


def provenance_files():
    """Trained network -> its provenance JSON (with its training history), from the registry."""
    return {
        Path(file).stem: f"results/models/{Path(file).stem}.json"
        for model in MODELS
        for file in model.files
        if file.endswith(".pt")
    }


def model_scores():
    return [f"results/scores/{name}.tsv" for name in model_names()]


# The models the fusion weighs: fusion.models, or the preset's fusion_models this config runs.
FUSED = msff.config.fused_models(config)
# Config fusion with the weighting it uses (fusion.rule, else the preset's fusion_rule).
FUSION = msff.config.fusion_settings(config)


def get_fusion_scores(wildcards):
    return [f"results/scores/{name}.tsv" for name in FUSED]


# fusion.out_of_fold k > 1: every fused model that trains is trained k more times over the
# train and validation clips (workflow/rules/folds.smk), each scoring the fold it left out.
OUT_OF_FOLD = config["fusion"]["out_of_fold"]


@cache
def out_of_fold_clips():
    """Each out-of-fold training's clips with their split (decided at parse time)."""
    import msff.folds

    return msff.folds.out_of_fold_records(
        clip_records(), CLASSES, OUT_OF_FOLD, config["seed"]
    )


def out_of_fold_scores(wildcards=None):
    """Fused model -> its scores files of the out-of-fold trainings ({} when off)."""
    if OUT_OF_FOLD < 2:
        return {}
    trained = [name for name in trained_models() if name in FUSED]
    return {
        name: expand(
            f"results/out_of_fold/fold{{fold}}/scores/{name}.tsv",
            fold=range(OUT_OF_FOLD),
        )
        for name in trained
    }


def get_out_of_fold_scores(wildcards):
    return sum(out_of_fold_scores().values(), [])


def get_all_scores(wildcards):
    return [*model_scores(), "results/scores/fusion.tsv"]


def get_final_output():
    outputs = [
        "results/qc.tsv",
        "results/predictions.tsv",
        "results/evaluation/table1.tsv",
        "results/evaluation/table2.tsv",
        "results/plots/training_curves.png",
        "results/plots/class_recall.png",
        "results/plots/fusion_weights.png",
        "results/plots/qc.png",
    ]
    if config["class_weighting"]:
        outputs.append("results/evaluation/class_weighting.tsv")
    if config["fusion"]["submission"]:
        outputs.append("results/submission")
    return outputs


# `snakemake crossval` (workflow/rules/crossval.smk): the folds and their files.
@cache
def folds():
    """Every clip's fold, and each fold's clips with their split (decided at parse time)."""
    import msff.folds

    records = clip_records()
    k, seed = config["crossval"]["folds"], config["seed"]
    fold = msff.folds.assign_folds(records, CLASSES, k, seed)
    return fold, [
        msff.folds.fold_records(records, fold, i, CLASSES, seed) for i in range(k)
    ]


def fold_clips(wildcards):
    """A fold's clips and splits, of `snakemake crossval` or of the out-of-fold fusion."""
    if wildcards.experiment == "crossval":
        return folds()[1][int(wildcards.fold)]
    return out_of_fold_clips()[int(wildcards.fold)]


def crossval_files(wildcards=None):
    """Model -> (scores, provenance) of every fold, for the face models config turns on."""
    trained = {}
    for backbone in config["models"]["face_backbones"]:
        trained[f"{backbone}_frames"] = ("scores/{b}_frames.tsv", "models/{b}_cnn.json")
        trained[f"{backbone}_blstm"] = ("scores/{b}_blstm.tsv", "models/{b}_blstm.json")
        for name in (f"{backbone}_frames", f"{backbone}_blstm"):
            trained[name] = tuple(p.format(b=backbone) for p in trained[name])
    if config["models"]["c3d"]:
        trained["c3d"] = ("scores/c3d.tsv", "models/c3d.json")
    if config["models"]["hog_svm"]:
        trained["hog_svm"] = ("scores/hog_svm.tsv", "models/hog_svm.json")
    return {
        name: tuple(
            expand(
                f"results/crossval/fold{{fold}}/{path}",
                fold=range(config["crossval"]["folds"]),
            )
            for path in paths
        )
        for name, paths in trained.items()
    }


def crossval_scores(wildcards=None):
    return {name: files[0] for name, files in crossval_files().items()}


def crossval_fused():
    """The models of crossval's face fusion: those of FUSED it trains (msff.config)."""
    return msff.config.crossval_fused(FUSED, list(crossval_files()))


def crossval_provenance(wildcards=None):
    """Provenance of every fold's models: their training seconds go into the table."""
    trained = {name: files[1] for name, files in crossval_files().items()}
    return {"fer2013_zeroshot": ["results/crossval/fer2013_zeroshot.json"], **trained}


# `class_weighting: true` (workflow/rules/class_weighting.smk): each head's arguments with
# train.class_weighted flipped, and the models retrained with them (msff.config imports
# no scikit-learn: the Snakefile is parsed by every run and every cluster job).
FLIPPED = msff.config.class_weighting_flipped(HEADS)
