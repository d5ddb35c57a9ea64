"""Algorithms from outside the repository: a throw-away package, written here into a temporary
folder as a user would write theirs (docs/adding-an-algorithm.md), named by entry point and by
'package.module:ClassName', checked like the built-ins, and run end to end."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from algorithms import base
from algorithms.base import ConfigError, check_interface, get, implemented
from harness.errors import UserError
from harness.suite import load_suite
from tests.helpers import small_suite

PACKAGE = "harness_plugin_example"
DISTRIBUTION = "harness-plugin-example"
VERSION = "0.3.1"

# Linear behaviour cloning in NumPy: no JAX, no PyTorch, only the interface.
LINEAR_BC = '''
"""Linear behaviour cloning: a = W x + b fitted to the batch's actions by gradient descent."""

import dataclasses
from typing import ClassVar

import numpy as np

from algorithms.base import Transitions


@dataclasses.dataclass(frozen=True)
class Config:
    PRESETS: ClassVar[dict] = {"paper": {}, "debug": {"batch_size": 8}}

    lr: float = 0.5  # gradient descent step size
    batch_size: int = 32  # transitions per gradient step
    steps_per_call: int = 5  # gradient steps per update call
    noise: float = 0.1  # std of the exploration noise


class LinearBC:
    name = "linear-bc"
    Config = Config

    def __init__(self, obs_space, action_space, config, seed, total_updates):
        self.config, self.seed = config, seed
        self.batch_spec = Transitions(frame_stack=1, batch_size=config.batch_size,
                                      steps_per_call=config.steps_per_call)
        dim = int(np.prod(obs_space.shape))
        # Inputs in [0, 1] (pixels) scaled so that |x| <= 1: the step size then needs no tuning.
        self.scale = (255.0 if obs_space.dtype == np.uint8 else 1.0) * np.sqrt(dim)
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0.0, 0.01, (dim, action_space.shape[0])).astype(np.float32)
        self.b = np.zeros(action_space.shape[0], np.float32)
        self.explored = np.zeros((), np.int64)  # exploration draws so far: the RNG's state

    def features(self, obs):
        return obs.reshape(len(obs), -1).astype(np.float32) / self.scale

    def update(self, batch):
        losses = []
        for obs, action in zip(batch["obs"][:, :, 0], batch["action"]):
            x = self.features(obs)
            error = x @ self.w + self.b - action
            self.w -= self.config.lr * x.T @ error / len(x)
            self.b -= self.config.lr * error.mean(0)
            losses.append(float(np.mean(error ** 2)))
        return {"loss": float(np.mean(losses))}

    def initial_state(self, n):
        return None

    def act(self, obs, state, explore):
        action = self.features(obs[:, 0]) @ self.w + self.b
        if explore:
            rng = np.random.default_rng([self.seed, int(self.explored)])
            action = action + self.config.noise * rng.standard_normal(action.shape)
            self.explored += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32), state

    def state_dict(self):
        return {"w": self.w.copy(), "b": self.b.copy(), "explored": self.explored.copy()}

    def load_state_dict(self, state):
        self.w, self.b = np.array(state["w"]), np.array(state["b"])
        self.explored = np.array(state["explored"])
'''

BROKEN = '''
import dataclasses
from typing import ClassVar

from harness_plugin_example.linear_bc import Config as GoodConfig, LinearBC


@dataclasses.dataclass
class MutableConfig:
    PRESETS: ClassVar[dict] = {"paper": {}}
    lr: float = 0.1


class NotFrozen(LinearBC):
    Config = MutableConfig


@dataclasses.dataclass(frozen=True)
class BadPresetConfig(GoodConfig):
    PRESETS: ClassVar[dict] = {"paper": {"lr": -1.0}, "typo": {"learning_rate": 0.1}}


class BadPreset(LinearBC):
    Config = BadPresetConfig


class NoAct:
    name = "no-act"
    Config = GoodConfig

    def __init__(self, obs_space, action_space, config, seed):
        pass

    def update(self, batch):
        return {}


def not_a_class():
    pass
'''


def write_package(site: Path) -> Path:
    """The package as `pip install` leaves it: its module and a dist-info folder holding the
    version and the entry point (importlib.metadata reads nothing else)."""
    package = site / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "linear_bc.py").write_text(LINEAR_BC)
    (package / "broken.py").write_text(BROKEN)
    (package / "needs_torch.py").write_text("import torch  # noqa: F401\n")
    info = site / f"{PACKAGE}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\n"
                                   f"Version: {VERSION}\n")
    (info / "top_level.txt").write_text(f"{PACKAGE}\n")
    (info / "entry_points.txt").write_text(
        f"[{base.ENTRY_POINT_GROUP}]\nlinear-bc = {PACKAGE}.linear_bc:LinearBC\n"
        f"broken-bc = {PACKAGE}.broken:NotFrozen\n")
    return site


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The package importable in this process, and forgotten again after the test."""
    path = write_package(tmp_path / "site")
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setattr(base, "_PLUGINS", {})
    yield path
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def test_the_built_ins_pass_the_interface_check_plugins_get():
    for name in implemented():
        check_interface(get(name), name)


def test_a_plugin_is_found_by_entry_point_and_by_module_path(site):
    by_entry_point = get("linear-bc")
    assert get(f"{PACKAGE}.linear_bc:LinearBC") is by_entry_point
    source = base.source_of("linear-bc")
    assert source["distribution"] == DISTRIBUTION and source["version"] == VERSION
    assert source["file"] == str(site / PACKAGE / "linear_bc.py") and not source["builtin"]
    # Named by path, the version is found through the package's top-level module.
    assert base.source_of(f"{PACKAGE}.linear_bc:LinearBC")["version"] == VERSION


@pytest.mark.parametrize("name,message", [
    ("no_such_package.algo:Algo", "no module named 'no_such_package'. Install the package"),
    (f"{PACKAGE}.missing:Algo", f"no module named '{PACKAGE}.missing'"),
    (f"{PACKAGE}.linear_bc:LinearBc", "has no 'LinearBc'. Did you mean 'LinearBC'?"),
    (f"{PACKAGE}.broken:not_a_class", "is a function, not a class"),
    (f"{PACKAGE}.needs_torch:Algo", "needs the module 'torch', which is not installed. PyTorch "
                                    "algorithms need the torch extra: pip install -e '.[torch]'"),
    (f"{PACKAGE}.broken:NotFrozen", "its Config must be frozen: @dataclass(frozen=True)"),
    (f"{PACKAGE}.broken:BadPreset", "its preset 'paper' does not build: linear-bc.config.lr must "
                                    "be in (0, 1], got -1.0.; its preset 'typo' does not build"),
    (f"{PACKAGE}.broken:NoAct", "it has no method `act`"),
    (f"{PACKAGE}.broken:NoAct", "cannot take (obs_space, action_space, config, seed, total_updates)"),
    ("broken-bc", "algorithm 'broken-bc': harness_plugin_example.broken.NotFrozen does not "
                  "implement the Algorithm interface"),
    ("linear-cb", "unknown algorithm 'linear-cb'. Did you mean 'linear-bc'?"),
    ("a:b:c", "is not 'package.module:ClassName'"),
])
def test_a_bad_plugin_is_refused_with_what_to_fix(site, name, message, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(ConfigError) as err:
        get(name)
    assert message in str(err.value)


def test_a_suite_naming_a_bad_plugin_stops_before_anything_runs(site, tmp_path):
    path = small_suite(tmp_path, algorithms=f"[{{name: '{PACKAGE}.broken:NoAct'}}]")
    with pytest.raises(UserError, match="algorithms: algorithm .* has no method `act`"):
        load_suite(str(path))


def harness(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def csvs(run: Path):
    metrics = pd.read_csv(run / "metrics.csv").drop(columns="wall_time")
    train = pd.read_csv(run / "train.csv").drop(columns=["wall_time", "updates_per_second"])
    return metrics, train


@pytest.mark.slow
def test_a_plugin_from_outside_the_repository_runs_a_suite_end_to_end(tmp_path, data_dir):
    """From a user's folder, with their package on PYTHONPATH as after `pip install`: list,
    run (killed by SIGKILL mid-offline), status, resume, report; the resumed CSVs equal an
    uninterrupted run's, and config.yaml records the plugin's version."""
    user = tmp_path / "user"
    user.mkdir()
    site = write_package(tmp_path / "site")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(repo)]),
           "MOTO_HARNESS_DATA": str(data_dir)}
    env.pop("MOTO_HARNESS_FAULT", None)
    listed = harness("list", env=env, cwd=user)
    assert listed.returncode == 0, listed.stderr
    assert (f"linear-bc  {PACKAGE}.linear_bc:LinearBC from {DISTRIBUTION} {VERSION}; presets: "
            "paper, debug") in listed.stdout
    assert "broken-bc" in listed.stdout and "unusable: " in listed.stdout

    suite = small_suite(user, name="plug", protocol={
        "offline_steps": 60, "online_env_steps": 250, "updates_per_episode": 10,
        "eval_every_episodes": 2, "eval_episodes": 2, "dataset_episodes": 2},
        algorithms=f"[{{name: linear-bc, preset: debug}}, "
                   f"{{name: '{PACKAGE}.linear_bc:LinearBC', preset: debug}}]")
    with open(suite, "a") as f:
        f.write("checkpoint: {every_minutes: 0, every_episodes: 1}\n")
    reference = harness("run", str(suite), "--results", "reference", env=env, cwd=user)
    assert reference.returncode == 0, reference.stdout + reference.stderr

    killed = harness("run", str(suite), "--results", "r", cwd=user,
                     env={**env, "MOTO_HARNESS_FAULT": "update:4"})
    assert killed.returncode == 1, killed.stdout + killed.stderr
    status = harness("status", str(suite), "--results", "r", env=env, cwd=user)
    assert status.stdout.count("interrupted") >= 2, status.stdout
    resumed = harness("run", str(suite), "--results", "r", env=env, cwd=user)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    logs = "".join(p.read_text() for p in (user / "r" / "_jobs").rglob("*_log.err"))
    assert logs.count("resumed from its checkpoint: offline, grad_steps=15") == 2

    for label in ("linear-bc", "LinearBC"):
        run = user / "r" / "plug" / "toy.reach" / label / "seed0"
        for ours, theirs in zip(csvs(run), csvs(user / "reference" / run.relative_to(user / "r"))):
            pd.testing.assert_frame_equal(ours, theirs)
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["algorithm_source"]["version"] == VERSION
        assert config["algorithm_source"]["distribution"] == DISTRIBUTION
        assert config["algorithm_config"] == {"lr": 0.5, "batch_size": 8, "steps_per_call": 5,
                                              "noise": 0.1}
    report = harness("report", "--results", "r", "--suite", str(suite), env=env, cwd=user)
    assert report.returncode == 0, report.stdout + report.stderr
    text = (user / "r" / "_report" / "plug" / "report.md").read_text()
    assert "linear-bc" in text and "LinearBC" in text


def test_a_missing_plugin_exits_2_from_the_command_line(tmp_path):
    suite = small_suite(tmp_path, algorithms="[{name: 'my_lab.algos:MyAgent'}]")
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--results",
                          str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2
    assert "no module named 'my_lab'. Install the package that provides 'my_lab.algos'" in out.stderr
    assert "Traceback" not in out.stderr
