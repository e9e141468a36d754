# Each head trained once more with train.class_weighted flipped: per-class recall of the
# rare classes (disgust, surprise) with class weighting on and off, side by side. In the
# default target when config class_weighting is true; else `snakemake class_weighting`.
rule class_weighting:
    input:
        scores=model_scores(),
        features=lambda wildcards: list(weighting_features().values()),
        faces=get_face_caches,
        opensmile=get_opensmile_features,
        code=msff_code("msff.stages.weighting"),
    output:
        table=report(
            "results/evaluation/class_weighting.tsv",
            caption="../report/class_weighting.rst",
            category="2. Models",
        ),
        models=directory("results/class_weighting"),
    log:
        "logs/class_weighting.log",
    benchmark:
        "benchmarks/class_weighting.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        scores=lambda wildcards, input: dict(zip(model_names(), input.scores)),
        features=lambda wildcards: weighting_features(),
        clips=clip_records(),
        faces=face_cache_map,
        opensmile=lambda wildcards: {
            clip: f"results/opensmile/{clip}.h5" for clip in audio_clips()
        },
        classes=CLASSES,
        heads=HEADS,
        weights=config["weights"],
    script:
        "../scripts/class_weighting.py"
