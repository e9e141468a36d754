from msff.logs import log_to

log_to(snakemake.log[0])
from msff import plots

plots.training_curves(snakemake.params.provenance, snakemake.output.curves)
plots.class_recall(snakemake.input.table1, snakemake.output.recall)
plots.fusion_weights(snakemake.input.weights, snakemake.output.weights)
plots.qc_overview(snakemake.input.qc, snakemake.output.qc)
