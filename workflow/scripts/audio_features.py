from msff.logs import log_to

log_to(snakemake.log[0])
import torch

from msff.stages.models import audio_features

torch.set_num_threads(snakemake.threads)
audio_features(
    snakemake.input.model,
    snakemake.params.clips,
    snakemake.params.spectrograms,
    snakemake.output[0],
)
