#!/usr/bin/env bash
# Snakemake runs this inside the new environment, from the directory it was started in
# (the checkout's root): install this checkout's msff, editable, without touching the pins.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
