from pathlib import Path

from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.heads.frame_cnn import finetune_cnn

set_cpu_threads(snakemake.threads)
finetune_cnn(
    backbone=snakemake.wildcards.backbone,
    clips=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    out_model=snakemake.output.model,
    out_provenance=snakemake.output.provenance,
    out_scores=snakemake.output.scores,
    # Not written by weighted_finetune_cnn (class weighting compares the classifiers only).
    out_features=snakemake.output.get("features"),
    classes=snakemake.params.classes,
    weights=snakemake.params.weights,
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
    # Outside the outputs: a killed or retried job resumes from its last epoch.
    checkpoint=Path("results/checkpoints") / Path(snakemake.output.model).relative_to("results"),
    **snakemake.params.args,
)
