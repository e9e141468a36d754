from msff.logs import log_to

log_to(snakemake.log[0])
import torch

from msff.stages.models import train_c3d
from msff.train import TrainSettings

torch.set_num_threads(snakemake.threads)
models = snakemake.params.models
train_c3d(
    snakemake.params.clips,
    snakemake.params.faces,
    snakemake.output.scores,
    snakemake.output.model,
    snakemake.output.provenance,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    fc_width=models["fc_width"],
    width=models["c3d_width"],
    frames=models["c3d_frames"],
    size=models["c3d_size"],
    crop=models["cnn_crop"],
    stride=models["c3d_frames"] // 2,
    weights=snakemake.params.weights,
    batch_norm=models["batch_norm"],
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
)
