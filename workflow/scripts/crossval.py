from msff.logs import log_to

log_to(snakemake.log[0])
from pathlib import Path

from msff.crossval import run
from msff.devices import set_cpu_threads

set_cpu_threads(snakemake.threads)
run(
    records=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    out_dir=Path(snakemake.output.metrics).parent,
    classes=snakemake.params.classes,
    heads=snakemake.params.heads,
    backbones=snakemake.params.backbones,
    c3d=snakemake.params.c3d,
    weights=snakemake.params.weights,
    folds=snakemake.params.folds,
    fusion_step=snakemake.params.fusion["step"],
    fusion_rule=snakemake.params.fusion["rule"],
    fusion_min_clips=snakemake.params.fusion["min_clips"],
)
