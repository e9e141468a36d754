from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.svm import svm_opensmile

svm_opensmile(
    snakemake.params.clips,
    snakemake.params.features,
    snakemake.output.scores,
    snakemake.output.model,
    snakemake.output.fitted,
    snakemake.params.classes,
    snakemake.params.seed,
    c_grid=snakemake.params.svm["c_grid"],
    gamma_grid=snakemake.params.svm["gamma_grid"],
    folds=snakemake.params.svm["folds"],
    class_weighted=snakemake.params.class_weighted,
)
