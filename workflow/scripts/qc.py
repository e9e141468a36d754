from msff.logs import log_to
from msff.stages.qc import qc_table, summary

console = log_to(snakemake.log[0])
table = qc_table(snakemake.params.clips, snakemake.params.caches, snakemake.output[0])
# A bad clip does not fail its job, so the summary goes to the console too: this is
# where a user sees which clips failed and why.
for stream in (console, None):
    print(summary(table, snakemake.output[0]), file=stream)
