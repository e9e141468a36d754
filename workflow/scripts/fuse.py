from msff.logs import log_to

console = log_to(snakemake.log[0])
from msff.stages.fuse import fuse

settings = snakemake.params.fusion
record = fuse(
    snakemake.params.scores,
    snakemake.params.clips,
    snakemake.params.classes,
    step=settings["step"],
    cv_folds=settings["cv_folds"],
    rule=settings["rule"],
    min_clips=settings["min_clips"],
    seed=snakemake.params.seed,
    not_fused=snakemake.params.not_fused,
    out_of_fold=snakemake.params.out_of_fold,
    out_weights=snakemake.output.weights,
    out_scores=snakemake.output.scores,
    out_predictions=snakemake.output.predictions,
)
print(
    f"predictions: {snakemake.output.predictions} (fusion weights "
    f"{record['weights']} searched on {record['n_search_clips']} {record['searched_on']} clips, "
    f"validation accuracy {record['val_accuracy']:.3f})",
    file=console,
)
