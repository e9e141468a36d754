from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.audio import spectrograms

spectrograms(
    snakemake.wildcards.clip,
    snakemake.input.audio,
    snakemake.output[0],
    **snakemake.params.audio,
)
