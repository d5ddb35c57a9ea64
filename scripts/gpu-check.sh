#!/usr/bin/env bash
# One command for a GPU node: JAX and PyTorch on CUDA, MuJoCo on the NVIDIA driver's EGL, and
# what a run costs there. Prints updates/s of every algorithm at `paper` size, rendered
# steps/s, evaluation steps/s, and MOTO's success after a 5-minute run (suites/gpu-check.yaml).
# At most ~8 minutes on one H100. Usage:
#   bash scripts/gpu-check.sh [--quick] [--results DIR]
# Without an NVIDIA GPU, or with --quick, it runs a quick mode of the same steps: `debug`
# presets, two algorithms, a few updates (CI runs it that way; about 2 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
results=results/gpu-check
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --results) results="$2"; shift ;;
    *) echo "gpu-check: unknown argument $1 (use --quick, --results DIR)" >&2; exit 2 ;;
  esac
  shift
done
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  [ "$quick" = 1 ] || echo "gpu-check: no NVIDIA GPU here; running the quick mode" >&2
  quick=1
fi
if [ "$quick" = 1 ]; then
  .venv/bin/python -c "import harness, torch" 2>/dev/null || scripts/setup.sh torch
  updates=(--presets debug --algorithms bc moto --update-calls 1)
  render=(--steps 50)
  evaluation=(--presets debug --algorithms sac --eval-episodes 2 --eval-workers 2)
  learning=(--set "algorithms=[{name: moto, preset: debug}]" --set protocol.offline_steps=20
            --set protocol.online_env_steps=800 --set protocol.updates_per_episode=4
            --set protocol.eval_episodes=2 --set protocol.eval_every_episodes=1
            --set protocol.dataset_episodes=2 --set "resources={cpus: 1}")
else
  # JAX's CUDA 12 build beside torch's CUDA build (docs/cluster.md); not yet run on a GPU node.
  scripts/setup.sh cuda,torch
  nvidia-smi -L
  updates=(--presets paper --update-calls 5)
  render=(--steps 2000)
  evaluation=(--presets paper --algorithms moto sac --eval-episodes 10)
  learning=()
fi
py=.venv/bin/python
$py -c "import jax; print('JAX', jax.__version__, 'devices:', jax.devices())"
$py -c "import torch; print('torch', torch.__version__, 'CUDA:', torch.cuda.is_available())"
echo "== updates/s"
$py -m harness bench --only updates "${updates[@]}"
echo "== rendering"
$py -m harness bench --only render "${render[@]}"
echo "== evaluation"
$py -m harness bench --only eval "${evaluation[@]}"
echo "== MOTO on metaworld/door-open (suites/gpu-check.yaml)"
$py -m harness run suites/gpu-check.yaml --results "$results" "${learning[@]}"
$py -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print('MOTO eval_success by env_steps:', ', '.join(f\"{r['env_steps']}: {r['eval_success']}\" for r in rows))
" "$results/gpu-check/metaworld.door-open/moto/seed0/metrics.csv"
