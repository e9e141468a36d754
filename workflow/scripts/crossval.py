from msff.logs import log_to

log_to(snakemake.log[0])
import json
from pathlib import Path

import numpy as np

from msff.crossval import tabulate

# Training seconds of each model, summed over its folds (from the models' provenance).
seconds = {
    name: sum(json.loads(Path(path).read_text())["seconds"] for path in paths)
    for name, paths in snakemake.params.provenance.items()
}
tabulate(
    records=snakemake.params.clips,
    classes=snakemake.params.classes,
    fold=np.array(snakemake.params.fold),
    fold_clips=snakemake.params.fold_clips,
    fold_scores=snakemake.params.scores,
    zeroshot_tsv=snakemake.input.zeroshot,
    out_dir=Path(snakemake.output.metrics).parent,
    fusion_step=snakemake.params.fusion["step"],
    fusion_rule=snakemake.params.fusion["rule"],
    fusion_min_clips=snakemake.params.fusion["min_clips"],
    seconds=seconds,
    seed=snakemake.params.seed,
    fused=snakemake.params.fused,
)
