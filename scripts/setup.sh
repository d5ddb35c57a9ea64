#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the harness into it; idempotent and quick when
# nothing changed. Usage: scripts/setup.sh [EXTRAS], e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

# Headless OpenGL for MuJoCo: EGL (Mesa's software renderer without a GPU), OSMesa as fallback.
if ! ldconfig -p | grep -q 'libEGL_mesa.so.0\|libEGL_nvidia.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing headless OpenGL libraries (libegl1, libgl1-mesa-dri, libosmesa6)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libegl1 libgl1-mesa-dri libosmesa6 >/dev/null; } || echo "setup: warning: apt-get failed" >&2
  else
    echo "setup: warning: libEGL or libOSMesa missing; install libegl1 libgl1-mesa-dri libosmesa6" >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
  "$python" -m venv .venv
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
