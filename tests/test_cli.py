"""What users expect of a package: --version, an informative --help, a licence, a citation."""

import subprocess
import sys
import tomllib

import pytest
import yaml

import msff
from msff.__main__ import main

from .conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"msff {PROJECT['version']}\n"
    assert msff.__version__ == PROJECT["version"]


def test_help_lists_every_command_with_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "msff", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "emotion recognition" in out and "--version" in out
    for command in ("build-sheet", "predict"):
        assert f"\n    {command} " in out  # listed with its one-line help
        assert f"\n    msff {command} " in out  # and an example
    assert "msff COMMAND --help" in out


def test_licence_is_the_mit_licence_pyproject_names():
    assert PROJECT["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "the msff authors" in text.splitlines()[2]
    assert "Permission is hereby granted, free of charge" in text


def test_citation_names_this_software_and_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == PROJECT["version"] and cff["license"] == PROJECT["license"]
    paper = cff["preferred-citation"]
    assert paper["doi"] == "10.1145/3242969.3264992"
    assert (paper["year"], paper["start"], paper["end"]) == (2018, 646, 652)
    assert [a["family-names"] for a in paper["authors"]] == [
        "Lu",
        "Zheng",
        "Li",
        "Tang",
        "Liu",
        "Yan",
        "Zong",
    ]
    assert "Multiple Spatio-temporal Feature Learning" in paper["title"]
