rule spectrograms:
    input:
        audio="results/audio/{clip}.h5",
        code=msff_code("msff.stages.audio"),
    output:
        "results/spectrograms/{clip}.h5",
    log:
        "logs/spectrograms/{clip}.log",
    benchmark:
        "benchmarks/spectrograms/{clip}.tsv"
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        audio={
            k: v
            for k, v in PRESET["audio"].items()
            if k not in ("sample_rate", "silence_dbfs")
        },
    script:
        "../scripts/spectrograms.py"


rule opensmile:
    input:
        audio="results/audio/{clip}.h5",
        code=msff_code("msff.stages.audio"),
    output:
        "results/opensmile/{clip}.h5",
    log:
        "logs/opensmile/{clip}.log",
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    script:
        "../scripts/opensmile.py"
