"""Lint as part of the tests: Snakemake's linter, snakefmt, ruff."""

import subprocess
import sys

import pytest

from .conftest import REPO


def run(*cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    proc = run(sys.executable, "-m", "snakemake", "--lint", "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "cmd",
    [
        ("snakefmt", "--check", "Snakefile", "workflow/rules"),
        ("ruff", "check", "msff", "tests", "workflow/scripts", "bench"),
        ("ruff", "format", "--check", "msff", "tests", "workflow/scripts", "bench"),
    ],
)
def test_style(cmd):
    proc = run(*cmd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
