from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.heads.zeroshot import zeroshot_scores

set_cpu_threads(snakemake.threads)
zeroshot_scores(
    clips=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    out_scores=snakemake.output.scores,
    out_model=snakemake.output.model,
    classes=snakemake.params.classes,
    weights=snakemake.params.weights,
)
