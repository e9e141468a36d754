from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.stages.faces import align_faces, precropped_faces

set_cpu_threads(snakemake.threads)
if snakemake.params.face_input == "precropped":
    precropped_faces(
        snakemake.wildcards.clip,
        snakemake.input.frames,
        snakemake.output[0],
        snakemake.params.faces["size"],
    )
else:
    align_faces(
        snakemake.wildcards.clip,
        snakemake.input.frames,
        snakemake.output[0],
        **snakemake.params.faces,
    )
