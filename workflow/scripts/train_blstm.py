from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.models import blstm_options, train_blstm
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
models = snakemake.params.models
train_blstm(
    snakemake.input.features,
    snakemake.params.clips,
    snakemake.output.scores,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    **blstm_options(models),
    unseen_note=snakemake.params.unseen,
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
)
