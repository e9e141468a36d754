from msff.logs import log_to

log_to(snakemake.log[0])
from msff.heads.hog_svm import train_hog_svm

train_hog_svm(
    clips=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    out_scores=snakemake.output.scores,
    out_model=snakemake.output.model,
    out_fitted=snakemake.output.fitted,
    classes=snakemake.params.classes,
    **snakemake.params.args,
)
