#!/usr/bin/env bash
# The README's second command: set up with the test extra, then run every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,torch
exec .venv/bin/python -m pytest "$@"
