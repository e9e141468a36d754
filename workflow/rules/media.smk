# The per-clip stages run one job per shard of clips (common.smk, msff/shards.py): a job
# skips each clip whose cache is up to date, writes the others and each one's log
# (logs/<rule>/<clip>.log), and lists its clips in its manifest, results/shards/<rule>/.
rule extract_audio:
    input:
        sources=lambda wildcards: shard_sources("extract_audio", wildcards.shard),
        code=msff_code("msff.stages.media", "msff.shards"),
    output:
        "results/shards/extract_audio/{shard}.tsv",
    log:
        "logs/shards/extract_audio/{shard}.log",
    retries: SHARD_RETRIES
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        clips=lambda wildcards: shard_jobs("extract_audio", wildcards.shard),
        sample_rate=PRESET["audio"]["sample_rate"],
        silence_dbfs=PRESET["audio"]["silence_dbfs"],
        ffmpeg=config.get("ffmpeg"),
    script:
        "../scripts/extract_audio.py"
