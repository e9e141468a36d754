# Not part of the default target: `snakemake crossval` cross-validates the face models over
# the whole sheet, grouped by subject (for small face sets such as CK+). Each fold is one
# more value of a wildcard of the face models' own rules: the folds train in parallel, a
# rerun redoes only what changed, and the `crossval` rule only tabulates. A fold's job
# takes one thread: small models gain little from a second, folds side by side gain 2x.
use rule finetune_cnn as crossval_finetune_cnn with:
    output:
        model="results/crossval/fold{fold}/models/{backbone}_cnn.pt",
        provenance="results/crossval/fold{fold}/models/{backbone}_cnn.json",
        scores="results/crossval/fold{fold}/scores/{backbone}_frames.tsv",
        features="results/crossval/fold{fold}/features/{backbone}.h5",
    log:
        "logs/crossval/fold{fold}/finetune_cnn/{backbone}.log",
    benchmark:
        "benchmarks/crossval/fold{fold}/finetune_cnn/{backbone}.tsv"
    threads: 1
    params:
        clips=fold_clips,
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["frame_cnn"],
        weights=lambda wildcards: config["weights"].get(wildcards.backbone),


use rule train_blstm as crossval_train_blstm with:
    input:
        features="results/crossval/fold{fold}/features/{backbone}.h5",
        code=msff_code("msff.heads.blstm"),
    output:
        scores="results/crossval/fold{fold}/scores/{backbone}_blstm.tsv",
        model="results/crossval/fold{fold}/models/{backbone}_blstm.pt",
        provenance="results/crossval/fold{fold}/models/{backbone}_blstm.json",
    log:
        "logs/crossval/fold{fold}/train_blstm/{backbone}.log",
    benchmark:
        "benchmarks/crossval/fold{fold}/train_blstm/{backbone}.tsv"
    threads: 1
    params:
        clips=fold_clips,
        classes=CLASSES,
        args=HEADS["blstm"],
        unseen="no face found",


use rule train_c3d as crossval_train_c3d with:
    output:
        scores="results/crossval/fold{fold}/scores/c3d.tsv",
        model="results/crossval/fold{fold}/models/c3d.pt",
        provenance="results/crossval/fold{fold}/models/c3d.json",
    log:
        "logs/crossval/fold{fold}/train_c3d.log",
    benchmark:
        "benchmarks/crossval/fold{fold}/train_c3d.tsv"
    threads: 1
    params:
        clips=fold_clips,
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["c3d"],
        weights=config["weights"].get("c3d"),


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
        fusion=config["fusion"],
        seed=config["seed"],
    script:
        "../scripts/crossval.py"
