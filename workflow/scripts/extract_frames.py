from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.media import extract_frames

extract_frames(
    snakemake.wildcards.clip,
    snakemake.params.source,
    snakemake.output[0],
    fps=snakemake.params.frames["fps"],
    max_side=snakemake.params.frames["max_side"],
    max_pixels=snakemake.params.frames["max_pixels"],
    ffmpeg=snakemake.params.ffmpeg,
)
