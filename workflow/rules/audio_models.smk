rule svm_opensmile:
    input:
        features=get_opensmile_features,
        code=msff_code("msff.heads.svm"),
    output:
        scores="results/scores/opensmile_svm.tsv",
        model="results/models/opensmile_svm.json",
        fitted="results/models/opensmile_svm.h5",
    log:
        "logs/svm_opensmile.log",
    benchmark:
        "benchmarks/svm_opensmile.tsv"
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        clips=clip_records(),
        features=opensmile_cache_map,
        classes=CLASSES,
        args=HEADS["svm"],
    script:
        "../scripts/svm_opensmile.py"


rule finetune_audio_cnn:
    input:
        spectrograms=get_spectrogram_caches,
        code=msff_code("msff.heads.audio_cnn"),
    output:
        model="results/models/vgg19_audio_cnn.pt",
        provenance="results/models/vgg19_audio_cnn.json",
    log:
        "logs/finetune_audio_cnn.log",
    benchmark:
        "benchmarks/finetune_audio_cnn.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        spectrograms=spectrogram_cache_map,
        classes=CLASSES,
        args=HEADS["audio_cnn"],
        weights=config["weights"].get("vgg19"),
    script:
        "../scripts/finetune_audio_cnn.py"


rule audio_features:
    input:
        model="results/models/vgg19_audio_cnn.pt",
        spectrograms=get_spectrogram_caches,
        code=msff_code("msff.heads.audio_cnn"),
    output:
        "results/features/vgg19_audio.h5",
    log:
        "logs/audio_features.log",
    benchmark:
        "benchmarks/audio_features.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        spectrograms=spectrogram_cache_map,
    script:
        "../scripts/audio_features.py"


rule train_blstm_audio:
    input:
        features="results/features/vgg19_audio.h5",
        code=msff_code("msff.heads.blstm"),
    output:
        scores="results/scores/vgg19_blstm_audio.tsv",
        model="results/models/vgg19_blstm_audio.pt",
        provenance="results/models/vgg19_blstm_audio.json",
    log:
        "logs/train_blstm_audio.log",
    benchmark:
        "benchmarks/train_blstm_audio.tsv"
    conda:
        "../../envs/msff.yaml"
    threads: 2
    resources:
        **TRAINING_RESOURCES,
    params:
        clips=clip_records(),
        classes=CLASSES,
        args=HEADS["audio_blstm"],
        unseen="no audio, or a silent track",
    script:
        "../scripts/train_blstm.py"
