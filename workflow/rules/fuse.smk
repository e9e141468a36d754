rule fuse:
    input:
        scores=get_fusion_scores,
        out_of_fold=get_out_of_fold_scores,
        code=msff_code("msff.stages.fuse"),
    output:
        weights=report(
            "results/fusion/weights.json",
            caption="../report/weights.rst",
            category="3. Fusion",
        ),
        scores="results/scores/fusion.tsv",
        predictions=report(
            "results/predictions.tsv",
            caption="../report/predictions.rst",
            category="3. Fusion",
        ),
    log:
        "logs/fuse.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        scores=lambda wildcards, input: dict(zip(FUSED, input.scores)),
        not_fused=[name for name in model_names() if name not in FUSED],
        out_of_fold=out_of_fold_scores(),
        clips=clip_records(),
        classes=CLASSES,
        fusion=FUSION,
        seed=config["seed"],
    script:
        "../scripts/fuse.py"


rule submission:
    input:
        predictions="results/predictions.tsv",
        code=msff_code("msff.stages.fuse"),
    output:
        directory("results/submission"),
    log:
        "logs/submission.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    script:
        "../scripts/submission.py"


rule evaluate:
    input:
        scores=get_all_scores,
        out_of_fold=get_out_of_fold_scores,
        qc="results/qc.tsv",
        code=msff_code("msff.stages.fuse"),
    output:
        table1=report(
            "results/evaluation/table1.tsv",
            caption="../report/table1.rst",
            category="2. Models",
            subcategory="Accuracy table",
        ),
        table2=report(
            "results/evaluation/table2.tsv",
            caption="../report/table2.rst",
            category="3. Fusion",
        ),
        confusion=report(
            directory("results/evaluation/confusion"),
            patterns=["{name}.{split}.png"],
            caption="../report/confusion.rst",
            category="2. Models",
            subcategory="Confusion matrices",
            labels={"model": "{name}", "split": "{split}"},
        ),
    log:
        "logs/evaluate.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        scores=lambda wildcards, input: dict(
            zip([*model_names(), "fusion"], input.scores)
        ),
        clips=clip_records(),
        classes=CLASSES,
        fused=FUSED,
        fusion=FUSION,
        out_of_fold=out_of_fold_scores(),
    script:
        "../scripts/evaluate.py"
