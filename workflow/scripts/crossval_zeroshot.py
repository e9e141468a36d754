from msff.logs import log_to

log_to(snakemake.log[0])
from msff.crossval import write_zeroshot

write_zeroshot(
    records=snakemake.params.clips,
    faces_h5=snakemake.params.faces,
    classes=snakemake.params.classes,
    weights=snakemake.params.weights,
    out=snakemake.output.scores,
    out_record=snakemake.output.record,
)
