from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.models import finetune_cnn, frame_cnn_options
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
models = snakemake.params.models
finetune_cnn(
    snakemake.wildcards.backbone,
    snakemake.params.clips,
    snakemake.params.faces,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.output.scores,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    **frame_cnn_options(models),
    weights=snakemake.params.weights,
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
)
