# Not part of the default target: `snakemake crossval` cross-validates the face models over
# the whole sheet, grouped by subject (for small face sets such as CK+). Each fold is one
# more value of the fold rules' wildcards (workflow/rules/folds.smk, experiment `crossval`):
# the folds train in parallel, a rerun redoes only what changed, and the `crossval` rule
# only tabulates.


# FER2013's own classifier trains nothing: one scores file serves every fold.
rule crossval_zeroshot:
    input:
        faces=get_face_caches,
        code=msff_code("msff.crossval"),
    output:
        scores="results/crossval/fer2013_zeroshot.tsv",
        record="results/crossval/fer2013_zeroshot.json",
    log:
        "logs/crossval/zeroshot.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        weights=config["weights"].get("fer2013"),
    script:
        "../scripts/crossval_zeroshot.py"


# Only tabulates: out-of-fold scores, each fold's fusion, metrics, confusion matrices.
rule crossval:
    input:
        unpack(crossval_scores),
        zeroshot="results/crossval/fer2013_zeroshot.tsv",
        provenance=lambda wildcards: sum(crossval_provenance().values(), []),
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
        assignment="results/crossval/folds.tsv",
    log:
        "logs/crossval.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        clips=clip_records(),
        classes=CLASSES,
        fold=lambda wildcards: folds()[0].tolist(),
        fold_clips=lambda wildcards: folds()[1],
        scores=lambda wildcards: crossval_scores(),
        provenance=lambda wildcards: crossval_provenance(),
        fused=crossval_fused(),
        fusion=FUSION,
        seed=config["seed"],
    script:
        "../scripts/crossval.py"
