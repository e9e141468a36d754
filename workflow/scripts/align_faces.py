from pathlib import Path

from msff.logs import log_to

log_to(snakemake.log[0])
from msff.devices import set_cpu_threads
from msff.shards import run_shard
from msff.stages.faces import align_faces, precropped_faces
from msff.stages.media import extract_frames

set_cpu_threads(snakemake.threads)
frames, faces, ffmpeg = snakemake.params.frames, snakemake.params.faces, snakemake.params.ffmpeg


def decode_and_align(clip: dict) -> str:
    """The clip's frames (a cache that lives only as long as this), then its faces."""
    try:
        extract_frames(clip["clip"], clip["source"], clip["frames"], ffmpeg=ffmpeg, **frames)
        if clip["face_input"] == "precropped":
            return precropped_faces(clip["clip"], clip["frames"], clip["out"], faces["size"])
        return align_faces(clip["clip"], clip["frames"], clip["out"], **faces)
    finally:
        Path(clip["frames"]).unlink(missing_ok=True)


# A frames cache left by a job killed between writing it and removing it.
for clip in snakemake.params.clips:
    Path(clip["frames"]).unlink(missing_ok=True)
run_shard(
    snakemake.params.clips,
    decode_and_align,
    snakemake.output[0],
    dict(frames=frames, faces=faces, ffmpeg=ffmpeg),
    snakemake.input.code,
)
