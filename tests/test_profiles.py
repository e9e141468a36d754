"""The workflow profiles in profiles/: what they name exists, and Snakemake accepts them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
import yte
from snakemake.profiles import ProfileConfigFileParser

from .conftest import REPO

PROFILES = ("default", "slurm")
ENV = ("MSFF_SLURM_PARTITION", "MSFF_SLURM_ACCOUNT", "MSFF_SLURM_GPUS")


def load(name: str) -> dict:
    """The profile as Snakemake reads it: YTE applied, keys in YAML structure."""
    with open(REPO / "profiles" / name / "config.yaml") as f:
        return yte.process_yaml(f, require_use_yte=True)


def as_arguments(name: str) -> dict:
    """The profile as Snakemake turns it into command-line values."""
    with open(REPO / "profiles" / name / "config.yaml") as f:
        return ProfileConfigFileParser().parse(f)


@pytest.fixture(autouse=True)
def no_site_variables(monkeypatch):
    for variable in ENV:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def cli_options() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", proc.stdout))


def workflow_rules() -> set[str]:
    return {
        name
        for path in (REPO / "workflow" / "rules").glob("*.smk")
        for found in re.findall(
            r"^(?:rule (\w+):|use rule \w+ as (\w+) with:)", path.read_text(), re.M
        )
        for name in found  # a rule, or a rule made from another (use rule ... as ...)
        if name
    }


def workflow_groups() -> set[str]:
    return {
        m
        for path in (REPO / "workflow" / "rules").glob("*.smk")
        for m in re.findall(r"^\s+group:\s+\"(\w+)\"", path.read_text(), re.M)
    }


@pytest.mark.parametrize("name", PROFILES)
def test_keys_are_snakemake_options(name, cli_options):
    unknown = {key for key in load(name) if f"--{key}" not in cli_options}
    assert not unknown, f"profiles/{name}: not a snakemake option: {sorted(unknown)}"
    assert set(as_arguments(name)) == set(load(name))


@pytest.mark.parametrize("name", PROFILES)
def test_rules_and_groups_named_exist(name):
    profile = load(name)
    rules = workflow_rules()
    assert {"align_faces", "qc"} <= rules  # the parser finds the rules
    for key in ("set-resources", "set-threads"):
        assert set(profile.get(key, {})) <= rules, f"profiles/{name}: {key}: no such rule"
    assert set(profile.get("group-components", {})) <= workflow_groups()


def test_slurm_profile_batches_the_per_clip_group():
    profile = load("slurm")
    assert profile["executor"] == "slurm"
    assert "preprocess" in workflow_groups()
    assert profile["group-components"]["preprocess"] > 1
    assert {"mem_mb", "runtime", "cpus_per_task"} <= set(profile["default-resources"])
    assert {"mem_mb", "runtime", "cpus_per_task"} <= set(profile["set-resources"]["align_faces"])


def test_slurm_site_settings_come_from_the_environment(monkeypatch):
    resources = load("slurm")["default-resources"]
    assert "slurm_partition" not in resources and "slurm_account" not in resources
    assert "gpu" not in load("slurm")["set-resources"]["align_faces"]
    monkeypatch.setenv("MSFF_SLURM_PARTITION", "gpu_short")
    monkeypatch.setenv("MSFF_SLURM_ACCOUNT", "lab42")
    monkeypatch.setenv("MSFF_SLURM_GPUS", "1")
    profile = load("slurm")
    assert profile["default-resources"]["slurm_partition"] == "gpu_short"
    assert profile["default-resources"]["slurm_account"] == "lab42"
    assert profile["set-resources"]["align_faces"]["gpu"] == 1
    assert "slurm_partition=gpu_short" in as_arguments("slurm")["default-resources"]
    assert "align_faces:gpu=1" in as_arguments("slurm")["set-resources"]


def test_default_profile_keeps_gpu_jobs_to_one_card():
    assert load("default")["resources"]["gpu"] == 1
    # ... and the rules that train or extract features are the ones that ask for a card.
    text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    gpu_rules = set(re.findall(r"rule (\w+):(?:(?!\nrule ).)*?gpu=1", text, re.S))
    assert gpu_rules == {
        "finetune_cnn",
        "cnn_features",
        "train_blstm",
        "train_c3d",
        "finetune_audio_cnn",
        "audio_features",
        "train_blstm_audio",
    }  # the crossval_* and weighted_* rules inherit theirs (`use rule ... with:`)


@pytest.mark.parametrize("name", PROFILES)
def test_dry_run_of_the_demo_with_the_profile(name, tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(REPO / "demo" / "clips.tsv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-s",
            REPO / "Snakefile",
            "-d",
            tmp_path,
            "--workflow-profile",
            REPO / "profiles" / name,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "MSFF_SLURM_PARTITION": "debug"},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert f"workflow specific profile {REPO / 'profiles' / name}" in output
    assert "This was a dry-run" in output
    assert "align_faces" in output and "qc" in output
    if name == "slurm":
        assert "slurm_partition=debug" in output
