from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.heads.frame_cnn import cnn_features

set_cpu_threads(snakemake.threads)
cnn_features(
    model_pt=snakemake.input.model,
    clips=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    out=snakemake.output[0],
)
