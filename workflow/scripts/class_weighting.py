from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.weighting import compare_class_weighting

set_cpu_threads(snakemake.threads)
compare_class_weighting(
    run_scores=snakemake.params.scores,
    clips=snakemake.params.clips,
    classes=snakemake.params.classes,
    heads=snakemake.params.heads,
    faces_h5=snakemake.params.faces,
    features_h5=snakemake.params.features,
    opensmile_h5=snakemake.params.opensmile,
    weights=snakemake.params.weights,
    out_table=snakemake.output.table,
    work_dir=snakemake.output.models,
)
