from msff.logs import log_to

log_to(snakemake.log[0])
import torch

from msff.stages.models import cnn_features

torch.set_num_threads(snakemake.threads)
cnn_features(
    snakemake.input.model, snakemake.params.clips, snakemake.params.faces, snakemake.output[0]
)
