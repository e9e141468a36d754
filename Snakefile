# MSFF: video clips -> aligned faces, spectrograms and openSMILE features (part 1 of the DAG).
#
#   clips.tsv ─┬─ extract_frames ── align_faces ──────────────┐
#              └─ extract_audio ─┬─ spectrograms ─────────────┼─ qc
#                                └─ opensmile ────────────────┘
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


rule all:
    default_target: True
    input:
        get_final_output(),
