rule finetune_cnn:
    input:
        faces=get_face_caches,
        code=frame_cnn_code,
    output:
        model="results/models/{backbone}_cnn.pt",
        provenance="results/models/{backbone}_cnn.json",
        scores="results/scores/{backbone}_frames.tsv",
        # From the same pass over every face as the scores: the BLSTM's input.
        features="results/features/{backbone}.h5",
    log:
        "logs/finetune_cnn/{backbone}.log",
    benchmark:
        "benchmarks/finetune_cnn/{backbone}.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["frame_cnn"],
        weights=lambda wildcards: config["weights"].get(wildcards.backbone),
    script:
        "../scripts/finetune_cnn.py"


rule train_blstm:
    input:
        features="results/features/{backbone}.h5",
        code=msff_code("msff.heads.blstm"),
    output:
        scores="results/scores/{backbone}_blstm.tsv",
        model="results/models/{backbone}_blstm.pt",
        provenance="results/models/{backbone}_blstm.json",
    log:
        "logs/train_blstm/{backbone}.log",
    benchmark:
        "benchmarks/train_blstm/{backbone}.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        classes=CLASSES,
        args=HEADS["blstm"],
        unseen="no face found",
    script:
        "../scripts/train_blstm.py"


# FER2013's own classifier, untrained: what the fine-tuned face models must beat.
rule zeroshot_scores:
    input:
        faces=get_face_caches,
        code=msff_code("msff.heads.zeroshot"),
    output:
        scores="results/scores/fer2013_zeroshot.tsv",
        model="results/models/fer2013_zeroshot.json",
    log:
        "logs/zeroshot_scores.log",
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        weights=config["weights"].get("fer2013"),
    script:
        "../scripts/zeroshot_scores.py"


rule train_c3d:
    input:
        faces=get_face_caches,
        code=msff_code("msff.heads.c3d"),
    output:
        scores="results/scores/c3d.tsv",
        model="results/models/c3d.pt",
        provenance="results/models/c3d.json",
    log:
        "logs/train_c3d.log",
    benchmark:
        "benchmarks/train_c3d.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["c3d"],
        weights=config["weights"].get("c3d"),
    script:
        "../scripts/train_c3d.py"


# HOG descriptors of the aligned faces + the SVM: the face branch's hand-crafted model.
rule train_hog_svm:
    input:
        faces=get_face_caches,
        code=msff_code("msff.heads.hog_svm"),
    output:
        scores="results/scores/hog_svm.tsv",
        model="results/models/hog_svm.json",
        fitted="results/models/hog_svm.h5",
    log:
        "logs/train_hog_svm.log",
    benchmark:
        "benchmarks/train_hog_svm.tsv"
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        clips=clip_records(),
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["hog_svm"],
    script:
        "../scripts/train_hog_svm.py"
