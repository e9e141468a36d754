from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.heads.audio_cnn import audio_features

set_cpu_threads(snakemake.threads)
audio_features(
    model_pt=snakemake.input.model,
    clips=snakemake.params.clips,
    spectrograms_h5=snakemake.params.spectrograms,
    out=snakemake.output[0],
)
