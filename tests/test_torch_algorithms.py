"""The PyTorch algorithms (bc-torch, sac-torch) under the harness's rules: the same seed gives
the same CSVs twice, a SIGKILL and resume gives the CSVs of an uninterrupted run, and a suite
that names one without torch installed stops with exit 2 and the install command. The
interface contracts are in test_algorithms_contract.py and the learning tests in
test_learning.py, beside their JAX twins'."""

import sys

import pandas as pd
import pytest

from algorithms import base
from harness.cli import main
from harness.errors import UserError
from harness.suite import load_suite
from tests.helpers import small_suite

PROTOCOL = {"offline_steps": 40, "online_env_steps": 250, "updates_per_episode": 10,
            "eval_every_episodes": 2, "eval_episodes": 2, "dataset_episodes": 2,
            "train_log_every": 10}
LABELS = ("bc-torch", "sac-torch")


def suite(tmp_path):
    path = small_suite(tmp_path, protocol=PROTOCOL, algorithms=(
        "[{name: bc-torch, preset: debug, config: {steps_per_call: 5}},"
        " {name: sac-torch, preset: debug, config: {steps_per_call: 5}}]"))
    with open(path, "a") as f:
        f.write("checkpoint: {every_minutes: 0, every_episodes: 1}\n")
    return path


def csvs(results, label):
    run = results / "t" / "toy.reach" / label / "seed0"
    metrics = pd.read_csv(run / "metrics.csv").drop(columns="wall_time")
    train = pd.read_csv(run / "train.csv").drop(columns=["wall_time", "updates_per_second"])
    return metrics, train


@pytest.mark.slow
def test_same_seed_same_csvs_and_a_killed_run_resumes_to_them(tmp_path, monkeypatch):
    path = suite(tmp_path)
    for results in ("first", "second"):
        assert main(["run", str(path), "--results", str(tmp_path / results)]) == 0
    monkeypatch.setenv("MOTO_HARNESS_FAULT", "update:4")  # each worker SIGKILLs itself there
    assert main(["run", str(path), "--results", str(tmp_path / "killed")]) == 1
    monkeypatch.delenv("MOTO_HARNESS_FAULT")
    assert main(["run", str(path), "--results", str(tmp_path / "killed")]) == 0
    logs = "".join(p.read_text() for p in (tmp_path / "killed" / "_jobs").rglob("*_log.err"))
    assert logs.count("resumed from its checkpoint: offline, grad_steps=15") == 2
    for label in LABELS:
        first = csvs(tmp_path / "first", label)
        assert len(first[0]) == 4 and first[1]["grad_steps"].max() > 40  # online updates too
        for other in ("second", "killed"):
            for ours, theirs in zip(first, csvs(tmp_path / other, label)):
                pd.testing.assert_frame_equal(ours, theirs)


def test_a_pytorch_algorithm_without_torch_stops_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    for module in ("algorithms.bc_torch", "algorithms.torch_nets"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(base, "_REGISTRY", {k: v for k, v in base._REGISTRY.items()
                                            if k != "bc-torch"})
    path = small_suite(tmp_path, algorithms="[{name: bc-torch, preset: debug}]")
    with pytest.raises(UserError, match=r"algorithm 'bc-torch': importing 'algorithms.bc_torch' "
                                        r"needs the module 'torch', which is not installed. "
                                        r"PyTorch algorithms need the torch extra: pip install "
                                        r"-e '.\[torch\]'"):
        load_suite(str(path))
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
