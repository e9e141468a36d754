# Not part of the default target: `snakemake crossval` cross-validates the face models
# over the whole sheet, grouped by subject (for small face sets such as CK+).
rule crossval:
    input:
        faces=get_face_caches,
        code=msff_code("msff.crossval"),
    output:
        metrics=report(
            "results/crossval/metrics.tsv",
            caption="../report/crossval.rst",
            category="4. Cross-validation",
        ),
        confusion=report(
            directory("results/crossval/confusion"),
            patterns=["{name}.png"],
            caption="../report/crossval_confusion.rst",
            category="4. Cross-validation",
            labels={"model": "{name}"},
        ),
        scores=directory("results/crossval/scores"),
        folds=directory("results/crossval/folds"),
        assignment="results/crossval/folds.tsv",
    log:
        "logs/crossval.log",
    benchmark:
        "benchmarks/crossval.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        heads=HEADS,
        backbones=config["models"]["face_backbones"],
        c3d=config["models"]["c3d"],
        weights=config["weights"],
        folds=config["crossval"]["folds"],
        fusion=config["fusion"],
    script:
        "../scripts/crossval.py"
