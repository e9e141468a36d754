from msff.logs import log_to

log_to(snakemake.log[0])
from pathlib import Path

from msff.crossval import run
from msff.devices import set_cpu_threads
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
run(
    snakemake.params.clips,
    snakemake.params.faces,
    Path(snakemake.output.metrics).parent,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    models=snakemake.params.models,
    backbones=snakemake.params.backbones,
    c3d=snakemake.params.c3d,
    weights=snakemake.params.weights,
    folds=snakemake.params.folds,
    fusion_step=snakemake.params.step,
)
