# MSFF: labelled video clips -> per-model class scores -> fused predictions and a report.
#
#   clips.tsv ─┬─ align_faces ─┬─ finetune_cnn (frame scores + features) ── train_blstm ─┐
#              │               └─ train_c3d ──────────────────────────────────────────────┤
#              └─ extract_audio ─┬─ spectrograms ── finetune_audio_cnn ── audio_features ──  │
#                                │                  train_blstm_audio ──────────────────────┼─ fuse ── evaluate
#                                └─ opensmile ── svm_opensmile ─────────────────────────────┘
#   Per-clip stages run one job per shard of clips (workflow/rules/media.smk), each clip's
#   cache and log its own.  qc: one row per clip (faces found, audio, errors).
#   fusion.out_of_fold k > 1: each fused model trained k more times on folds of train + val,
#   fuse searching its weights on their out-of-fold scores (the paper's protocol).
#   Not in the default target: `snakemake crossval`, subject-grouped k-fold
#   cross-validation of the face models.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/face_models.smk"
include: "workflow/rules/audio_models.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/class_weighting.smk"
include: "workflow/rules/folds.smk"
include: "workflow/rules/crossval.smk"
include: "workflow/rules/plots.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
