rule extract_frames:
    input:
        source=get_source,
        code=msff_code("msff.stages.media"),
    output:
        temp("results/frames/{clip}.h5"),
    log:
        "logs/extract_frames/{clip}.log",
    benchmark:
        "benchmarks/extract_frames/{clip}.tsv"
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        source=get_source_path,
        frames=PRESET["frames"],
        ffmpeg=config.get("ffmpeg"),
    script:
        "../scripts/extract_frames.py"


rule extract_audio:
    input:
        source=get_source,
        code=msff_code("msff.stages.media"),
    output:
        "results/audio/{clip}.h5",
    log:
        "logs/extract_audio/{clip}.log",
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    resources:
        **PER_CLIP_RESOURCES,
    params:
        source=get_source_path,
        sample_rate=PRESET["audio"]["sample_rate"],
        silence_dbfs=PRESET["audio"]["silence_dbfs"],
        ffmpeg=config.get("ffmpeg"),
    script:
        "../scripts/extract_audio.py"
