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

from msff.errors import ConfigError

SCHEMAS = files("msff") / "schemas"
DROP = "drop"


@cache
def schema(name: str) -> dict:
    """Return the JSON schema ``msff/schemas/{name}.schema.yaml``."""
    return yaml.safe_load((SCHEMAS / f"{name}.schema.yaml").read_text())


def schema_path(name: str) -> str:
    """Return the file path of a schema, for Snakemake's ``validate()``."""
    return str(SCHEMAS / f"{name}.schema.yaml")


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


def preset(config: dict) -> dict:
    """Return the preset block that ``config['preset']`` names."""
    name = config["preset"]
    presets = config["presets"]
    if name not in presets:
        raise ConfigError(f"preset={name!r} is not one of the presets: {sorted(presets)}")
    return presets[name]


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
