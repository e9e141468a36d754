from msff.logs import log_to

log_to(snakemake.log[0])
from msff.stages.fuse import write_submission

write_submission(snakemake.input.predictions, snakemake.output[0])
