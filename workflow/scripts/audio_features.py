from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.models import audio_features

set_cpu_threads(snakemake.threads)
audio_features(
    snakemake.input.model,
    snakemake.params.clips,
    snakemake.params.spectrograms,
    snakemake.output[0],
)
