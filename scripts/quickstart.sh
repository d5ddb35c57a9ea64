#!/usr/bin/env bash
# The README's first command: set up, run the smoke suite (every algorithm on pixels) and the
# smoke-learning suite (three algorithms learning MetaWorld door-open from states) locally,
# then write the report of both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh torch
.venv/bin/python -m harness run suites/smoke.yaml "$@"
.venv/bin/python -m harness run suites/smoke-learning.yaml "$@"
.venv/bin/python -m harness report
