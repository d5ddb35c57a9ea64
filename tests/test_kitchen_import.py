"""Kitchen's offline data: a small Minari dataset made here with Minari's own DataCollector,
imported (re-rendered, relabelled), and bad or missing Minari data refused with clear errors."""

import json
import shutil

import numpy as np
import pytest

from harness.cli import main
from harness.data import format as fmt
from harness.data import kitchen as importer
from harness.data.store import dataset_dir
from harness.envs import kitchen
from tests.helpers import small_suite

EPISODES, STEPS = 3, 12
MICROWAVE_COLUMN = 18 + 22 - 9  # object qpos starts at observation column 18, qpos index 9
KETTLE_COLUMNS = slice(18 + 23 - 9, 18 + 30 - 9)


def _collect(minari_dir, dataset_id):
    """A few random-action episodes through Minari's DataCollector, written to `minari_dir`."""
    from harness.envs.render import ensure_backend

    ensure_backend()  # before anything imports mujoco
    import gymnasium as gym
    import gymnasium_robotics
    import minari

    gym.register_envs(gymnasium_robotics)
    env = gym.make("FrankaKitchen-v1", max_episode_steps=STEPS, remove_task_when_completed=False,
                   terminate_on_tasks_completed=False,
                   tasks_to_complete=["microwave", "kettle", "light switch", "slide cabinet"])
    env = minari.DataCollector(env, record_infos=False)
    for seed in range(EPISODES):
        env.reset(seed=seed)
        while True:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
    env.create_dataset(dataset_id, algorithm_name="random", description="test data")
    env.close()


@pytest.fixture(scope="module")
def minari_dir(tmp_path_factory):
    """Both D4RL ids, the same episodes; in episode 1 the microwave and the kettle are at their
    goals from step 5 on (written into the stored observations, as a demonstration would)."""
    import h5py

    directory = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(directory))
    try:
        _collect(directory, "D4RL/kitchen/partial-v2")
    finally:
        mp.undo()
    path = importer.source_file("kitchen/mixed", directory)
    with h5py.File(path, "r+") as f:
        obs = f["episode_1/observations/observation"]
        values = obs[...]
        values[5:, MICROWAVE_COLUMN] = kitchen.GOALS["microwave"][0]
        values[5:, KETTLE_COLUMNS] = kitchen.GOALS["kettle"]
        obs[...] = values
    shutil.copytree(directory / "D4RL/kitchen/partial-v2", directory / "D4RL/kitchen/mixed-v2")
    return directory


def test_import_rerenders_relabels_and_records_table1(minari_dir, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "kitchen", "--minari-dir", str(minari_dir), "--data-dir", str(data)]) == 0
    assert "kitchen/partial" in capsys.readouterr().out
    for task, done_at_5 in (("kitchen/mixed", [True, True, False, False]),
                            ("kitchen/partial", [True, True, False, False])):
        directory = dataset_dir(task, data)
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["source"] == importer.SOURCES[task]
        assert (manifest["episodes"], manifest["steps"]) == (EPISODES, EPISODES * STEPS)
        assert manifest["source_metadata"]["total_steps"] == EPISODES * STEPS
        assert manifest["replay_drift"]["episodes"] == EPISODES
        episodes = [fmt.load_episode(p) for p in fmt.episode_paths(directory)]
        edited = episodes[1]
        assert edited["obs"].shape == (STEPS + 1, 64, 64, 3) and edited["obs"].dtype == np.uint8
        np.testing.assert_array_equal(edited["targets_done"][5], done_at_5)  # survived save and load
        assert not edited["targets_done"][:5].any()
        np.testing.assert_array_equal(edited["reward"][1:], edited["targets_done"][1:].sum(-1))
        assert edited["reward"][0] == 0 and not edited["success"].any()
        # The re-rendered frames show the opened microwave and the moved kettle.
        assert np.abs(edited["obs"][6].astype(int) - episodes[0]["obs"][6].astype(int)).mean() > 1
        assert manifest["average_most_targets_done"] == pytest.approx(2 / 3)


def test_replayed_actions_stay_close_to_the_stored_states(minari_dir):
    """The stored states come from the same simulator: replaying the actions from the first
    state drifts only by the observation noise of the robot joints."""
    from harness.envs import make_env

    (_, observations, actions), *_ = importer.read_episodes(importer.source_file("kitchen/mixed", minari_dir))
    qpos, qvel = importer.simulator_states(observations)
    env = make_env("kitchen/mixed", 0)
    try:
        drift = importer.replay_drift(env, qpos, qvel, actions)
    finally:
        env.close()
    assert drift["robot_mean"] < 0.01 and drift["objects_mean"] < 0.01, drift


def test_missing_minari_data_stops_a_kitchen_suite_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "nothing-here"))
    path = small_suite(tmp_path, tasks="[kitchen/mixed]", protocol={"online_env_steps": 280})
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "minari download D4RL/kitchen/partial-v2" in err and "--minari-dir" in err
    assert not (tmp_path / "r").exists()
    assert main(["data", "kitchen", "--minari-dir", str(tmp_path / "empty")]) == 2
    assert "D4RL/kitchen/partial-v2/data/main_data.hdf5" in capsys.readouterr().err


def _broken_copy(minari_dir, tmp_path, edit):
    directory = tmp_path / "broken"
    shutil.copytree(minari_dir, directory)
    path = importer.source_file("kitchen/mixed", directory)
    edit(path)
    return directory, path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_actions(path):
    import h5py

    with h5py.File(path, "r+") as f:
        del f["episode_2/actions"]


def _wrong_shape(path):
    import h5py

    with h5py.File(path, "r+") as f:
        values = f["episode_0/observations/observation"][...]
        del f["episode_0/observations/observation"]
        f["episode_0/observations/observation"] = values[:, :58]


@pytest.mark.parametrize("edit, expected", [
    (_truncate, "not a readable HDF5 file"),
    (_drop_actions, "episode_2 lacks observations/observation or actions"),
    (_wrong_shape, "episode_0 observations/observation has shape (13, 58)"),
])
def test_bad_minari_data_is_refused_naming_the_file(minari_dir, tmp_path, capsys, edit, expected):
    directory, path = _broken_copy(minari_dir, tmp_path, edit)
    data = tmp_path / "data"
    assert main(["data", "kitchen", "--tasks", "mixed", "--minari-dir", str(directory),
                 "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err, err
    assert not dataset_dir("kitchen/mixed", data).exists()


def _run_suite_tiny(suite, task, results, only=()):
    """Run a shipped Kitchen suite on `task` at debug sizes and tiny budgets; returns the
    (label, metrics) of each run."""
    import pandas as pd
    import yaml

    from harness.suite import SUITES_DIR

    raw = yaml.safe_load((SUITES_DIR / f"{suite}.yaml").read_text())
    entries = [a if isinstance(a, dict) else {"name": a} for a in raw["algorithms"]]
    debug = yaml.safe_dump([{**a, "preset": "debug"} for a in entries], default_flow_style=True).strip()
    argv = ["run", str(SUITES_DIR / f"{suite}.yaml"), "--results", str(results), "--executor", "debug"]
    for assignment in ["seeds=[0]", "protocol.offline_steps=20", "protocol.online_env_steps=280",
                       "protocol.updates_per_episode=20", "protocol.eval_every_episodes=1",
                       "protocol.eval_episodes=1", f"protocol.dataset_episodes={EPISODES}",
                       "protocol.train_log_every=10", f"tasks=[{task}]", f"algorithms={debug}"]:
        argv += ["--set", assignment]
    for condition in only:
        argv += ["--only", condition]
    assert main(argv) == 0, suite
    labels = [e.get("label", e["name"]) for e in entries]
    labels = [label for label in labels if not only or any(c.endswith("=" + label) for c in only)]
    return {label: pd.read_csv(results / suite / task.replace("/", ".") / label / "seed0" / "metrics.csv")
            for label in labels}


@pytest.mark.slow
def test_kitchen2_suite_runs_end_to_end_on_a_tiny_budget(minari_dir, tmp_path, monkeypatch):
    """kitchen2 as shipped on the imported test data, imported on first use from
    $MINARI_DATASETS_PATH: one algorithm of each family (debug sizes; the metaworld10 test runs
    all eight) offline, then one online episode each, then the report with its objects
    curves."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_dir))
    results = tmp_path / "r"
    families = ["moto", "lompo", "iql", "bc"]  # imagination, latent replay, model-free, BC
    runs = _run_suite_tiny("kitchen2", "kitchen/mixed", results,
                           only=[f"algorithm={name}" for name in families])
    assert sorted(runs) == sorted(families)
    for label, metrics in runs.items():
        assert list(metrics.phase) == ["offline", "online"], label
        assert metrics.eval_objects.notna().all() and (metrics.eval_objects >= 0).all(), label
    assert main(["report", "--results", str(results)]) == 0
    assert (results / "_report" / "kitchen2" / "curves-kitchen.png").exists()


@pytest.mark.slow
def test_moto_ablations_suite_runs_on_kitchen(minari_dir, tmp_path, monkeypatch):
    """moto-ablations as shipped plans its five variants on both Kitchen tasks; one variant runs."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_dir))
    runs = _run_suite_tiny("moto-ablations", "kitchen/partial", tmp_path / "r",
                           only=["algorithm=moto-no-bc-no-uncertainty"])
    assert list(runs) == ["moto-no-bc-no-uncertainty"]
    assert list(runs["moto-no-bc-no-uncertainty"].phase) == ["offline", "online"]
