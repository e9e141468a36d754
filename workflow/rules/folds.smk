# The models' own rules once more per fold of the sheet, for two experiments:
#   crossval      `snakemake crossval`: subject-grouped k-fold cross-validation of the face
#                 models over the whole sheet (workflow/rules/crossval.smk tabulates it);
#   out_of_fold   config fusion.out_of_fold k > 1: k trainings of every fused model over
#                 the train and validation clips, each scoring the subjects it left out,
#                 so the fusion weights are searched on every train and validation clip.
# Which clips a fold trains, validates and scores on is decided at parse time (common.smk's
# fold_clips); folds run side by side, a rerun redoes only the fold that changed. A fold's
# job takes one thread: small models gain little from a second, folds side by side gain 2x.
use rule finetune_cnn as fold_finetune_cnn with:
    output:
        model="results/{experiment}/fold{fold}/models/{backbone}_cnn.pt",
        provenance="results/{experiment}/fold{fold}/models/{backbone}_cnn.json",
        scores="results/{experiment}/fold{fold}/scores/{backbone}_frames.tsv",
        features="results/{experiment}/fold{fold}/features/{backbone}.h5",
    log:
        "logs/{experiment}/fold{fold}/finetune_cnn/{backbone}.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/finetune_cnn/{backbone}.tsv"
    threads: 1
    params:
        clips=fold_clips,
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["frame_cnn"],
        weights=lambda wildcards: config["weights"].get(wildcards.backbone),


use rule train_blstm as fold_train_blstm with:
    input:
        features="results/{experiment}/fold{fold}/features/{backbone}.h5",
        code=msff_code("msff.heads.blstm"),
    output:
        scores="results/{experiment}/fold{fold}/scores/{backbone}_blstm.tsv",
        model="results/{experiment}/fold{fold}/models/{backbone}_blstm.pt",
        provenance="results/{experiment}/fold{fold}/models/{backbone}_blstm.json",
    log:
        "logs/{experiment}/fold{fold}/train_blstm/{backbone}.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/train_blstm/{backbone}.tsv"
    threads: 1
    params:
        clips=fold_clips,
        classes=CLASSES,
        args=HEADS["blstm"],
        unseen="no face found",


use rule train_c3d as fold_train_c3d with:
    output:
        scores="results/{experiment}/fold{fold}/scores/c3d.tsv",
        model="results/{experiment}/fold{fold}/models/c3d.pt",
        provenance="results/{experiment}/fold{fold}/models/c3d.json",
    log:
        "logs/{experiment}/fold{fold}/train_c3d.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/train_c3d.tsv"
    threads: 1
    params:
        clips=fold_clips,
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["c3d"],
        weights=config["weights"].get("c3d"),


use rule train_hog_svm as fold_train_hog_svm with:
    output:
        scores="results/{experiment}/fold{fold}/scores/hog_svm.tsv",
        model="results/{experiment}/fold{fold}/models/hog_svm.json",
        fitted="results/{experiment}/fold{fold}/models/hog_svm.h5",
    log:
        "logs/{experiment}/fold{fold}/train_hog_svm.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/train_hog_svm.tsv"
    params:
        clips=fold_clips,
        faces=face_cache_map,
        classes=CLASSES,
        args=HEADS["hog_svm"],


use rule svm_opensmile as fold_svm_opensmile with:
    output:
        scores="results/{experiment}/fold{fold}/scores/opensmile_svm.tsv",
        model="results/{experiment}/fold{fold}/models/opensmile_svm.json",
        fitted="results/{experiment}/fold{fold}/models/opensmile_svm.h5",
    log:
        "logs/{experiment}/fold{fold}/svm_opensmile.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/svm_opensmile.tsv"
    params:
        clips=fold_clips,
        features=opensmile_cache_map,
        classes=CLASSES,
        args=HEADS["svm"],


use rule finetune_audio_cnn as fold_finetune_audio_cnn with:
    output:
        model="results/{experiment}/fold{fold}/models/vgg19_audio_cnn.pt",
        provenance="results/{experiment}/fold{fold}/models/vgg19_audio_cnn.json",
    log:
        "logs/{experiment}/fold{fold}/finetune_audio_cnn.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/finetune_audio_cnn.tsv"
    threads: 1
    params:
        clips=fold_clips,
        spectrograms=spectrogram_cache_map,
        classes=CLASSES,
        args=HEADS["audio_cnn"],
        weights=config["weights"].get("vgg19"),


use rule audio_features as fold_audio_features with:
    input:
        model="results/{experiment}/fold{fold}/models/vgg19_audio_cnn.pt",
        spectrograms=get_spectrogram_caches,
        code=msff_code("msff.heads.audio_cnn"),
    output:
        "results/{experiment}/fold{fold}/features/vgg19_audio.h5",
    log:
        "logs/{experiment}/fold{fold}/audio_features.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/audio_features.tsv"
    threads: 1
    params:
        clips=fold_clips,
        spectrograms=spectrogram_cache_map,


use rule train_blstm_audio as fold_train_blstm_audio with:
    input:
        features="results/{experiment}/fold{fold}/features/vgg19_audio.h5",
        code=msff_code("msff.heads.blstm"),
    output:
        scores="results/{experiment}/fold{fold}/scores/vgg19_blstm_audio.tsv",
        model="results/{experiment}/fold{fold}/models/vgg19_blstm_audio.pt",
        provenance="results/{experiment}/fold{fold}/models/vgg19_blstm_audio.json",
    log:
        "logs/{experiment}/fold{fold}/train_blstm_audio.log",
    benchmark:
        "benchmarks/{experiment}/fold{fold}/train_blstm_audio.tsv"
    threads: 1
    params:
        clips=fold_clips,
        classes=CLASSES,
        args=HEADS["audio_blstm"],
        unseen="no audio, or a silent track",
