import re
from pathlib import Path

from snakemake.utils import validate

import msff.config
import msff.sheet
from msff.codedeps import module_files

validate(config, schema=msff.config.schema_path("config"))
msff.config.check_label_map(config["labels"])
PRESET = msff.config.preset(config)

SHEET = msff.sheet.read(config["samples"])
validate(SHEET, schema=msff.config.schema_path("clips"))
SHEET = msff.sheet.classify(SHEET, config["labels"])
# Clips that run: the rest (dropped or unknown labels) are listed in the qc table.
CLIPS = SHEET[SHEET.excluded == ""]
for _clip in SHEET[SHEET.excluded != ""].itertuples():
    logger.warning(f"clip {_clip.clip}: excluded: {_clip.excluded}")


wildcard_constraints:
    clip="|".join(re.escape(c) for c in CLIPS.index) or "(?!)",


def msff_code(module):
    """The msff source files a stage runs: editing one reruns that stage (see msff/codedeps.py)."""
    return module_files(module, workflow.basedir)


def has_stream(clip, column):
    """Whether the sheet says the clip has that stream (assumed when the sheet does not say)."""
    return bool(CLIPS.loc[clip].get(column, True))


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


def get_final_output():
    return ["results/qc.tsv"]
