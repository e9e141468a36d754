rule spectrograms:
    input:
        audio="results/shards/extract_audio/{shard}.tsv",
        code=msff_code("msff.stages.audio", "msff.shards"),
    output:
        "results/shards/spectrograms/{shard}.tsv",
    log:
        "logs/shards/spectrograms/{shard}.log",
    benchmark:
        "benchmarks/spectrograms/{shard}.tsv"
    retries: SHARD_RETRIES
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        clips=lambda wildcards: shard_jobs("spectrograms", wildcards.shard),
        audio={
            k: v
            for k, v in PRESET["audio"].items()
            if k not in ("sample_rate", "silence_dbfs")
        },
    script:
        "../scripts/spectrograms.py"


rule opensmile:
    input:
        audio="results/shards/extract_audio/{shard}.tsv",
        code=msff_code("msff.stages.audio", "msff.shards"),
    output:
        "results/shards/opensmile/{shard}.tsv",
    log:
        "logs/shards/opensmile/{shard}.log",
    retries: SHARD_RETRIES
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        clips=lambda wildcards: shard_jobs("opensmile", wildcards.shard),
        # The functionals the SVM reads: IS09_emotion (paper) or ComParE_2016.
        feature_set=PRESET["models"]["svm_features"],
    script:
        "../scripts/opensmile.py"
