"""`bench` measures both rendering paths on the real simulator."""

import json

import pytest

from harness.cli import main


@pytest.mark.slow
def test_bench_reports_ours_faster_than_the_stock_path(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--only", "render", "--steps", "100", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["render"][0]
    assert row["task"] == "door-open"
    # docs/benchmarks.md holds the measured ratio (>10x); this guards against a regression
    # such as MSAA or a full-size buffer coming back, with room for a noisy CI machine.
    assert row["speedup"] > 4, row
    assert "speedup" in capsys.readouterr().out


def test_update_bench_times_an_algorithm_through_the_replay_sampler():
    from harness.bench import update_bench

    row = update_bench("bc", "debug", calls=1)
    assert row["compile_s"] > 0 and row["updates_per_s"] > 0
    assert row["batch_size"] == 32 and row["steps_per_call"] == 10
    # 64*64*3 image bytes + 4 floats of action + reward, flags, episode success and start index
    assert row["replay_bytes_per_step"] == 64 * 64 * 3 + 16 + 4 + 1 + 1 + 4 + 8


def test_bench_cli_filters_presets_overrides_k_and_rejects_presets_nobody_has(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--only", "updates", "--algorithms", "bc", "--presets", "debug",
                 "--steps-per-call", "2", "--update-calls", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["updates"]
    assert [(r["algorithm"], r["preset"], r["steps_per_call"]) for r in rows] == [("bc", "debug", 2)]
    assert main(["bench", "--only", "updates", "--algorithms", "bc", "--presets", "huge"]) == 2
    assert "no algorithm has the presets" in capsys.readouterr().err


def test_sac_update_flops_count_three_forward_passes_and_one_backward():
    from harness.bench import _d4pg_flops, sac_update_flops

    # 2 x multiply-adds of the 3x3 stride-2 layers on one 64x64x9 image: 31^2*81*32, 15^2*288*64,
    # 7^2*576*128, 3^2*1152*256.
    layers = [2 * 31 * 31 * 81 * 32, 2 * 15 * 15 * 288 * 64, 2 * 7 * 7 * 576 * 128, 2 * 3 * 3 * 1152 * 256]
    assert _d4pg_flops(1) == sum(layers)
    # s' through the current and the target encoder, s forward, and s backward (kernel and
    # input gradients, but no input gradient for the images).
    assert sac_update_flops(2) == 2 * (5 * sum(layers) - layers[0])


def test_the_sac_reference_times_the_pytorch_twin_beside_ours():
    pytest.importorskip("torch")
    from harness.bench import sac_update_rows

    rows = sac_update_rows(calls=1)
    assert [r["framework"].split()[0] for r in rows] == ["jax", "torch"]
    assert "algorithms/sac_torch.py" in rows[1]["framework"]
    assert all(r["batch_size"] == 256 and r["updates_per_s"] > 0 and r["gflops"] > 0 for r in rows)


@pytest.mark.slow
def test_the_gpu_check_runs_in_quick_mode(tmp_path):
    """scripts/gpu-check.sh on a machine without an NVIDIA GPU: every step in its quick mode."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(["bash", "scripts/gpu-check.sh", "--quick", "--results", str(tmp_path)],
                         cwd=repo, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for section in ("== updates/s", "== rendering", "== evaluation", "== MOTO on metaworld"):
        assert section in out.stdout
    assert "rendered MetaWorld steps/s (egl" in out.stdout or "(osmesa" in out.stdout
    assert "agent steps/s" in out.stdout
    assert "MOTO eval_success by env_steps: 0: " in out.stdout
