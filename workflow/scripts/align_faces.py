from msff.logs import log_to

log_to(snakemake.log[0])
import torch

from msff.stages.faces import align_faces

torch.set_num_threads(snakemake.threads)
align_faces(
    snakemake.wildcards.clip,
    snakemake.input.frames,
    snakemake.output[0],
    **snakemake.params.faces,
)
