# Each head trained once more with train.class_weighted flipped: per-class recall of the
# rare classes (disgust, surprise) with class weighting on and off, side by side. The
# weighted_* rules are the models' own rules with that one flag flipped; class_weighting
# only tabulates. In the default target when config class_weighting is true; else
# `snakemake class_weighting`.
use rule finetune_cnn as weighted_finetune_cnn with:
    output:
        model="results/class_weighting/models/{backbone}_cnn.pt",
        provenance="results/class_weighting/models/{backbone}_cnn.json",
        scores="results/class_weighting/scores/{backbone}_frames.tsv",
    log:
        "logs/class_weighting/finetune_cnn/{backbone}.log",
    benchmark:
        "benchmarks/class_weighting/finetune_cnn/{backbone}.tsv"
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=FLIPPED["frame_cnn"],
        weights=lambda wildcards: config["weights"].get(wildcards.backbone),


# On the run's own features: the classifier, not the feature extractor, is compared.
use rule train_blstm as weighted_train_blstm with:
    output:
        scores="results/class_weighting/scores/{backbone}_blstm.tsv",
        model="results/class_weighting/models/{backbone}_blstm.pt",
        provenance="results/class_weighting/models/{backbone}_blstm.json",
    log:
        "logs/class_weighting/train_blstm/{backbone}.log",
    benchmark:
        "benchmarks/class_weighting/train_blstm/{backbone}.tsv"
    params:
        clips=clip_records(),
        classes=CLASSES,
        args=FLIPPED["blstm"],
        unseen="no face found",


use rule train_c3d as weighted_train_c3d with:
    output:
        scores="results/class_weighting/scores/c3d.tsv",
        model="results/class_weighting/models/c3d.pt",
        provenance="results/class_weighting/models/c3d.json",
    log:
        "logs/class_weighting/train_c3d.log",
    benchmark:
        "benchmarks/class_weighting/train_c3d.tsv"
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=FLIPPED["c3d"],
        weights=config["weights"].get("c3d"),


use rule train_blstm_audio as weighted_train_blstm_audio with:
    output:
        scores="results/class_weighting/scores/vgg19_blstm_audio.tsv",
        model="results/class_weighting/models/vgg19_blstm_audio.pt",
        provenance="results/class_weighting/models/vgg19_blstm_audio.json",
    log:
        "logs/class_weighting/train_blstm_audio.log",
    benchmark:
        "benchmarks/class_weighting/train_blstm_audio.tsv"
    params:
        clips=clip_records(),
        classes=CLASSES,
        args=FLIPPED["audio_blstm"],
        unseen="no audio, or a silent track",


use rule train_hog_svm as weighted_train_hog_svm with:
    output:
        scores="results/class_weighting/scores/hog_svm.tsv",
        model="results/class_weighting/models/hog_svm.json",
        fitted="results/class_weighting/models/hog_svm.h5",
    log:
        "logs/class_weighting/train_hog_svm.log",
    benchmark:
        "benchmarks/class_weighting/train_hog_svm.tsv"
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=FLIPPED["hog_svm"],


use rule svm_opensmile as weighted_svm_opensmile with:
    output:
        scores="results/class_weighting/scores/opensmile_svm.tsv",
        model="results/class_weighting/models/opensmile_svm.json",
        fitted="results/class_weighting/models/opensmile_svm.h5",
    log:
        "logs/class_weighting/svm_opensmile.log",
    benchmark:
        "benchmarks/class_weighting/svm_opensmile.tsv"
    params:
        clips=clip_records(),
        features=opensmile_cache_map,
        classes=CLASSES,
        args=FLIPPED["svm"],


rule class_weighting:
    input:
        scores=lambda wildcards: [f"results/scores/{m}.tsv" for m in trained_models()],
        flipped=lambda wildcards: [
            f"results/class_weighting/scores/{m}.tsv" for m in trained_models()
        ],
        code=msff_code("msff.stages.weighting"),
    output:
        report(
            "results/evaluation/class_weighting.tsv",
            caption="../report/class_weighting.rst",
            category="2. Models",
        ),
    log:
        "logs/class_weighting.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        scores=lambda wildcards, input: dict(zip(trained_models(), input.scores)),
        flipped=lambda wildcards, input: dict(zip(trained_models(), input.flipped)),
        clips=clip_records(),
        classes=CLASSES,
        weighted=config["train"]["class_weighted"],
    script:
        "../scripts/class_weighting.py"
