from msff.logs import log_to

log_to(snakemake.log[0])
import torch

from msff.stages.models import finetune_audio_cnn
from msff.train import TrainSettings

torch.set_num_threads(snakemake.threads)
models = snakemake.params.models
finetune_audio_cnn(
    snakemake.params.clips,
    snakemake.params.spectrograms,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    fc_width=models["fc_width"],
    width=models["audio_cnn_width"],
    input_size=models["audio_cnn_input"],
    weights=snakemake.params.weights,
    batch_norm=models["batch_norm"],
    gaussian_std=snakemake.params.noise["gaussian_std"],
    salt_pepper=snakemake.params.noise["salt_pepper"],
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
)
