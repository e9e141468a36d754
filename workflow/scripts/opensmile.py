from msff.logs import log_to

log_to(snakemake.log[0])
from msff.shards import run_shard
from msff.stages.audio import opensmile

settings = dict(feature_set=snakemake.params.feature_set)
run_shard(
    snakemake.params.clips,
    lambda clip: opensmile(clip["clip"], clip["inputs"][0], clip["out"], **settings),
    snakemake.output[0],
    settings,
    snakemake.input.code,
)
