from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.weighting import compare_class_weighting

compare_class_weighting(
    run_scores=snakemake.params.scores,
    flipped_scores=snakemake.params.flipped,
    clips=snakemake.params.clips,
    classes=snakemake.params.classes,
    weighted=snakemake.params.weighted,
    out_table=snakemake.output[0],
)
