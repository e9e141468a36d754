# Decoding and alignment in one job: a clip's frames cache (uncompressed, large) lives only
# while its faces are aligned, and MTCNN loads once per shard.
rule align_faces:
    input:
        sources=lambda wildcards: shard_sources("align_faces", wildcards.shard),
        code=msff_code("msff.stages.media", "msff.stages.faces", "msff.shards"),
    output:
        "results/shards/align_faces/{shard}.tsv",
    log:
        "logs/shards/align_faces/{shard}.log",
    benchmark:
        "benchmarks/align_faces/{shard}.tsv"
    retries: SHARD_RETRIES
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    threads: 1
    resources:
        **ALIGN_FACES_RESOURCES,
    params:
        clips=lambda wildcards: shard_jobs("align_faces", wildcards.shard),
        frames=PRESET["frames"],
        faces=PRESET["faces"],
        ffmpeg=config.get("ffmpeg"),
    script:
        "../scripts/align_faces.py"
