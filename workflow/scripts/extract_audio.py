from msff.logs import log_to

log_to(snakemake.log[0])
from msff.shards import run_shard
from msff.stages.media import extract_audio

settings = dict(
    sample_rate=snakemake.params.sample_rate,
    silence_dbfs=snakemake.params.silence_dbfs,
    ffmpeg=snakemake.params.ffmpeg,
)
run_shard(
    snakemake.params.clips,
    lambda clip: extract_audio(clip["clip"], clip["source"], clip["out"], **settings),
    snakemake.output[0],
    settings,
    snakemake.input.code,
)
