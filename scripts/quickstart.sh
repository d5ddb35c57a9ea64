#!/usr/bin/env bash
# The README's first command: set up, run the smoke suite locally, then write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m harness run suites/smoke.yaml "$@"
.venv/bin/python -m harness report
