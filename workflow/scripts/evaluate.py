from msff.logs import log_to

console = log_to(snakemake.log[0])
from msff.stages.fuse import evaluate_all

evaluate_all(
    snakemake.params.scores,
    snakemake.params.fused,
    snakemake.params.clips,
    snakemake.params.classes,
    step=snakemake.params.fusion["step"],
    qc_tsv=snakemake.input.qc,
    out_table1=snakemake.output.table1,
    out_table2=snakemake.output.table2,
    out_confusion_dir=snakemake.output.confusion,
    rule=snakemake.params.fusion["rule"],
    min_clips=snakemake.params.fusion["min_clips"],
    out_of_fold=snakemake.params.out_of_fold,
)
print(f"evaluation: {snakemake.output.table1}, {snakemake.output.table2}", file=console)
