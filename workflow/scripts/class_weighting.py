from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.weighting import compare_class_weighting
from msff.train import TrainSettings

set_cpu_threads(snakemake.threads)
compare_class_weighting(
    snakemake.params.scores,
    snakemake.params.clips,
    snakemake.params.classes,
    TrainSettings(**snakemake.params.train),
    snakemake.params.models,
    snakemake.params.faces,
    snakemake.params.features,
    snakemake.params.opensmile,
    snakemake.params.svm,
    snakemake.params.weights,
    out_table=snakemake.output.table,
    work_dir=snakemake.output.models,
)
