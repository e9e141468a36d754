from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.media import extract_audio

extract_audio(
    snakemake.wildcards.clip,
    snakemake.params.source,
    snakemake.output[0],
    sample_rate=snakemake.params.sample_rate,
    silence_dbfs=snakemake.params.silence_dbfs,
    ffmpeg=snakemake.params.ffmpeg,
)
