from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.models import audio_cnn_options, audio_cnn_settings, finetune_audio_cnn
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
models = snakemake.params.models
finetune_audio_cnn(
    snakemake.params.clips,
    snakemake.params.spectrograms,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.params.classes,
    audio_cnn_settings(TrainSettings(**snakemake.params.train), models),
    weights=snakemake.params.weights,
    gaussian_std=snakemake.params.noise["gaussian_std"],
    salt_pepper=snakemake.params.noise["salt_pepper"],
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
    **audio_cnn_options(models),
)
