from pathlib import Path

from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.heads.blstm import train_blstm

set_cpu_threads(snakemake.threads)
train_blstm(
    features_h5=snakemake.input.features,
    clips=snakemake.params.clips,
    out_scores=snakemake.output.scores,
    out_model=snakemake.output.model,
    out_provenance=snakemake.output.provenance,
    classes=snakemake.params.classes,
    unseen_note=snakemake.params.unseen,
    config=snakemake.config,  # provenance only: not a param, so no rerun trigger
    # Outside the outputs: a killed or retried job resumes from its last epoch.
    checkpoint=Path("results/checkpoints") / Path(snakemake.output.model).relative_to("results"),
    **snakemake.params.args,
)
