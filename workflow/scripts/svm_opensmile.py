from msff.logs import log_to

log_to(snakemake.log[0])
from msff.heads.svm import svm_opensmile

svm_opensmile(
    clips=snakemake.params.clips,
    opensmile_h5=snakemake.params.features,
    out_scores=snakemake.output.scores,
    out_model=snakemake.output.model,
    out_fitted=snakemake.output.fitted,
    classes=snakemake.params.classes,
    **snakemake.params.args,
)
