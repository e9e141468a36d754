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
ENV = ("MSFF_SLURM_PARTITION", "MSFF_SLURM_ACCOUNT")


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


def test_slurm_profile_holds_only_site_settings(monkeypatch):
    """What jobs need is the rules' (memory, time, threads, GPUs); the profile names the site."""
    profile = load("slurm")
    assert "set-resources" not in profile and "set-threads" not in profile
    assert profile["default-resources"] == {}  # no partition or account unless the site says
    monkeypatch.setenv("MSFF_SLURM_PARTITION", "gpu_short")
    monkeypatch.setenv("MSFF_SLURM_ACCOUNT", "lab42")
    profile = load("slurm")
    assert profile["default-resources"] == {
        "slurm_partition": "gpu_short",
        "slurm_account": "lab42",
    }
    assert "slurm_partition=gpu_short" in as_arguments("slurm")["default-resources"]


def demo_config(tmp_path, **changes) -> None:
    """The repository's config, on the demo clips, with ``changes``, in tmp_path/config.yaml."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(REPO / "demo" / "clips.tsv")
    config.update(changes)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))


def planned_resources(tmp_path, **config_changes) -> dict[str, dict]:
    """Each rule's resources as Snakemake plans its jobs for the demo (a dry run, no profile)."""
    demo_config(tmp_path, **config_changes)
    # -n --verbose prints every planned job's rule and resources (no profile: the rules' own).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--verbose",
            "--workflow-profile",
            "none",
            "-s",
            REPO / "Snakefile",
            "-d",
            tmp_path,
            "--configfile",
            tmp_path / "config.yaml",
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = re.split(r"(?m)^\s*rule (\w+):$", proc.stdout + proc.stderr)
    planned = {}
    for rule, block in zip(parts[1::2], parts[2::2], strict=True):
        if rule == "all":  # the target rule runs nothing
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        assert resources, f"no resources printed for {rule}"
        planned[rule] = dict(item.split("=", 1) for item in resources.group(1).split(", "))
    return planned


def test_rules_declare_what_their_jobs_need(tmp_path):
    planned = planned_resources(tmp_path)
    training = {
        "finetune_cnn",
        "train_blstm",
        "train_c3d",
        "finetune_audio_cnn",
        "audio_features",
        "train_blstm_audio",
    }
    assert training <= set(planned)
    for rule, resources in planned.items():
        assert int(resources["mem_mb"]) >= 2000, rule
        assert int(resources["runtime"]) >= 1, rule
        assert int(resources.get("gpu", 0)) == (1 if rule in training else 0), rule
    assert planned["align_faces"]["mem_mb"] == "4000"
    assert planned["train_c3d"]["runtime"] == "60"
    # Without a card the training jobs ask for none (and so can run side by side).
    assert all(
        int(r.get("gpu", 0)) == 0 for r in planned_resources(tmp_path, gpus_per_job=0).values()
    )


def test_default_profile_keeps_gpu_jobs_to_one_card():
    assert load("default")["resources"]["gpu"] == 1


@pytest.mark.parametrize("name", PROFILES)
def test_dry_run_of_the_demo_with_the_profile(name, tmp_path):
    demo_config(tmp_path)
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
