"""Config: validation against the schema, preset resolution, label mapping.

A config has shared keys (sheet, seed, labels) and named ``presets`` holding every
value that differs between a GPU run at the paper's sizes and a 2-core CPU run. The
code reads only the resolved preset, so a difference from the paper is always a
config value, never a code path.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from msff import registry
from msff.errors import ConfigError

SCHEMAS = files("msff") / "schemas"
DROP = "drop"


@cache
def schema(name: str) -> dict:
    """Return the JSON schema ``msff/schemas/{name}.schema.yaml``.

    The config schema's lists of frame backbones and model names come from
    :mod:`msff.registry`, so a model registered there is a valid config value at once.
    """
    loaded = yaml.safe_load((SCHEMAS / f"{name}.schema.yaml").read_text())
    if name == "config":
        models = loaded["properties"]["models"]["properties"]
        models["face_backbones"]["items"]["enum"] = list(registry.FRAME_BACKBONES)
        names = [m.name for m in registry.every_model()]
        loaded["properties"]["fusion"]["properties"]["models"]["items"]["enum"] = names
        loaded["$defs"]["preset"]["properties"]["fusion_models"]["items"]["enum"] = names
    return loaded


def validate(instance: Any, name: str, where: str) -> None:
    """Raise ConfigError naming ``where`` and the first offending key when invalid."""
    validator = jsonschema.Draft202012Validator(schema(name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        key = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: {key}: {first.message}")


def load(path: str | Path) -> dict:
    """Read and validate a config file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    validate(config, "config", str(path))
    return config


def check_weight_files(config: dict) -> None:
    """Raise ConfigError for a file in ``weights`` that is not there (null: none named).

    Checked when the run starts, not when a model's job first opens it, hours later.
    """
    for name, path in config["weights"].items():
        if path is not None and not Path(path).is_file():
            raise ConfigError(
                f"config weights.{name}: {path}: no such weight file (null: the default, "
                "see config.yaml)"
            )


def preset(config: dict) -> dict:
    """Return the preset block that ``config['preset']`` names."""
    name = config["preset"]
    presets = config["presets"]
    if name not in presets:
        raise ConfigError(f"preset={name!r} is not one of the presets: {sorted(presets)}")
    return presets[name]


def fused_models(config: dict) -> list[str]:
    """The models whose scores the fusion weighs, in config order.

    Config ``fusion.models`` when it names them; when it is null, the preset's
    ``fusion_models`` that this config runs (``models``), so switching a model off or the
    preset over needs no edit of the fusion: the ``cpu`` preset leaves C3D out (trained
    from scratch on 2 cores it stays near the majority rate; bench/README.md), the
    ``paper`` preset fuses it as the paper did.
    """
    running = [m.name for m in registry.models(config["models"])]
    named = config["fusion"]["models"]
    if named is not None:
        unknown = sorted(set(named) - set(running))
        if unknown:
            raise ConfigError(
                f"config fusion.models: {unknown} are not models this config runs: {running}"
            )
        return list(named)
    block = preset(config)
    if "fusion_models" not in block:
        raise ConfigError(
            f"fusion.models is null and preset {config['preset']!r} has no fusion_models: "
            "name the fused models in one of them"
        )
    fused = [name for name in block["fusion_models"] if name in running]
    if not fused:
        raise ConfigError(
            f"preset {config['preset']!r} fusion_models {block['fusion_models']}: none of them "
            f"is a model this config runs ({sorted(running)})"
        )
    return fused


def crossval_fused(fused: list[str], trained: list[str]) -> list[str]:
    """The models of cross-validation's face fusion (``snakemake crossval``, bench/accuracy.py).

    Those of ``fused`` (:func:`fused_models`) that it has: its ``trained`` face models and
    FER2013 zero-shot (the BLSTMs, C3D in the paper preset, FER2013's frame CNN and HOG +
    SVM in the cpu preset), so it weighs what the workflow's fusion weighs; every trained
    one when the workflow's fusion weighs none of them (an audio-only fusion).
    """
    have = {*trained, "fer2013_zeroshot"}
    return [name for name in fused if name in have] or list(trained)


def fusion_settings(config: dict) -> dict:
    """Config ``fusion`` with its ``rule`` decided.

    ``fusion.rule``, or when it is null the preset's ``fusion_rule``: the ``cpu`` preset
    weighs its models equally, the ``paper`` preset searches the grid as the paper did.
    """
    settings = dict(config["fusion"])
    if settings["rule"] is None:
        block = preset(config)
        if "fusion_rule" not in block:
            raise ConfigError(
                f"fusion.rule is null and preset {config['preset']!r} has no fusion_rule: "
                "set one of them (best, one-se, auto or equal)"
            )
        settings["rule"] = block["fusion_rule"]
    if settings["rule"] == "equal" and settings["out_of_fold"] > 1:
        raise ConfigError(
            f"fusion.out_of_fold: {settings['out_of_fold']} trainings of every fused model "
            "give the weight search its clips, but rule 'equal' searches nothing: set "
            "fusion.rule (auto, best or one-se) or fusion.out_of_fold: 0"
        )
    return settings


def class_of(label: str, labels: dict) -> str | None:
    """Map a data set's label to a class; None when the config drops it.

    Raises ConfigError when the label is neither a class nor a key of ``labels.map``.
    """
    key = label.strip().lower()
    mapped = labels["map"].get(key, key)
    if mapped == DROP:
        return None
    if mapped not in labels["classes"]:
        raise ConfigError(
            f"label {label!r} is not a class {labels['classes']} and not in labels.map"
        )
    return mapped


def check_label_map(labels: dict) -> None:
    """Every target of ``labels.map`` must be a class or ``drop``."""
    for source, target in labels["map"].items():
        if target != DROP and target not in labels["classes"]:
            raise ConfigError(
                f"labels.map: {source!r} -> {target!r}, which is not a class "
                f"{labels['classes']} nor {DROP!r}"
            )


def head_arguments(config: dict) -> dict[str, dict]:
    """The exact keyword arguments of each head's training stage, from config and its preset.

    Keyed by head (``frame_cnn``, ``blstm`` for the face BLSTMs, ``audio_blstm``, ``c3d``,
    ``audio_cnn``, ``svm``); each rule
    passes its head's entry as params, so a value changes only the rules that use it
    (``audio_cnn_lr`` reruns the spectrogram CNN, nothing of the face branch). ``settings``
    are :class:`msff.train.TrainSettings` fields: config ``train``, the preset's
    optimiser, rate and epochs, the seed.
    """
    models = preset(config)["models"]
    settings = dict(
        config["train"],
        optimizer=models["optimizer"],
        lr=models["lr"],
        epochs=models["epochs"],
        validate_on=models["validate_on"],
        seed=config["seed"],
    )
    svm = config["svm"]
    svm_options = dict(
        c_grid=svm["c_grid"],
        gamma_grid=svm["gamma_grid"],
        folds=svm["folds"],
        probability=svm["probability"],
        class_weighted=config["train"]["class_weighted"],
        seed=config["seed"],
    )
    blstm = dict(
        hidden=models["blstm_hidden"], window=models["window"], stride=models["window_stride"]
    )
    mixup = models["mixup"]  # per branch; C3D trains without (not measured with it)
    # L2-SP: the face heads start from FER2013 (its blocks; with frame_head_start zeroshot,
    # its classifier's scores); the other heads start from noise, no prior worth keeping.
    face = dict(settings, mixup=mixup["face"], l2_sp=models["l2_sp"])
    return {
        "frame_cnn": dict(
            fc_width=models["fc_width"],
            crop=models["cnn_crop"],
            max_train_frames=models["max_train_frames"],
            train_blocks=models["finetune_blocks"],
            flip_test=models["flip_test"],
            shift_test=models["shift_test"],
            head_start=models["frame_head_start"],
            settings=dict(face, backbone_lr=models["backbone_lr"]),
        ),
        "blstm": dict(
            blstm,
            speaker_norm=models["blstm_speaker_norm"]["face"],
            members=models["blstm_ensemble"]["face"],
            settings=face,
        ),
        # The audio BLSTM: the same head, its own speaker normalisation, ensemble and mixup.
        "audio_blstm": dict(
            blstm,
            speaker_norm=models["blstm_speaker_norm"]["audio"],
            members=models["blstm_ensemble"]["audio"],
            settings=dict(settings, mixup=mixup["audio"]),
        ),
        "c3d": dict(
            fc_width=models["fc_width"],
            width=models["c3d_width"],
            frames=models["c3d_frames"],
            size=models["c3d_size"],
            crop=models["cnn_crop"],
            stride=models["c3d_frames"] // 2,  # C3D's windows overlap by half
            batch_norm=models["batch_norm"],
            settings=settings,
        ),
        "audio_cnn": dict(
            fc_width=models["fc_width"],
            width=models["audio_cnn_width"],
            input_size=models["audio_cnn_input"],
            batch_norm=models["batch_norm"],
            layers=models["audio_cnn_layers"],
            pool=models["audio_cnn_pool"],
            standardise=models["audio_cnn_standardise"],
            gaussian_std=config["audio_augmentation"]["gaussian_std"],
            salt_pepper=config["audio_augmentation"]["salt_pepper"],
            freq_masks=models["audio_cnn_masks"]["freq"],
            time_masks=models["audio_cnn_masks"]["time"],
            mask_width=models["audio_cnn_masks"]["width"],
            quiet_db=models["audio_cnn_quiet_db"],
            dropout=models["audio_cnn_dropout"],
            speaker_norm=models["audio_cnn_speaker_norm"],
            # Its own rate, batch, epochs and schedule: trained from scratch with Adam, the
            # 16-conv VGG-19 stays at chance at the rate that suits the shallow heads
            # (bench/README.md, audio); null takes the shared value.
            settings=dict(
                settings,
                lr=models["audio_cnn_lr"] or models["lr"],
                batch_size=models["audio_cnn_batch_size"] or settings["batch_size"],
                epochs=models["audio_cnn_epochs"] or settings["epochs"],
                schedule=models["audio_cnn_schedule"],
                weight_decay=(
                    settings["weight_decay"]
                    if models["audio_cnn_weight_decay"] is None
                    else models["audio_cnn_weight_decay"]
                ),
                mixup=mixup["audio"],
            ),
        ),
        # Both SVMs choose C, gamma and their probabilities alike (config svm).
        "hog_svm": svm_options,
        "svm": dict(
            svm_options, kernel=models["svm_kernel"], speaker_norm=models["svm_speaker_norm"]
        ),
    }


def class_weighting_flipped(heads: dict) -> dict:
    """Each head's arguments (``head_arguments``) with ``class_weighted`` the other way round.

    The ``weighted_*`` rules of ``class_weighting: true`` train with these.
    """
    out = {}
    for head, args in heads.items():
        if "settings" in args:
            settings = args["settings"]
            out[head] = dict(
                args, settings=dict(settings, class_weighted=not settings["class_weighted"])
            )
        else:
            out[head] = dict(args, class_weighted=not args["class_weighted"])
    return out
