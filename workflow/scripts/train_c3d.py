from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.models import c3d_options, train_c3d
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
models = snakemake.params.models
train_c3d(
    snakemake.params.clips,
    snakemake.params.faces,
    snakemake.output.scores,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    **c3d_options(models),
    weights=snakemake.params.weights,
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
)
