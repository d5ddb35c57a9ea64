"""The episode format, manifests, and dataset generation and reuse."""

import json

import numpy as np
import pytest

from harness.data import format as fmt
from harness.data.collect import load_dataset
from harness.envs import make_env
from harness.errors import UserError
from tests.helpers import episode


def test_episode_round_trips_through_npz(tmp_path):
    e = episode(4, success_at=3)
    fmt.save_episode(tmp_path / "episode_000000.npz", e)
    back = fmt.load_episode(tmp_path / "episode_000000.npz")
    for key in fmt.KEYS:
        np.testing.assert_array_equal(back[key], e[key])
        assert back[key].dtype == e[key].dtype
    assert fmt.episode_success(back) and fmt.episode_return(back) == 1.0


def test_malformed_episodes_are_rejected(tmp_path):
    e = episode(3)
    e["is_first"] = np.ones(4, bool)
    with pytest.raises(ValueError, match="is_first"):
        fmt.save_episode(tmp_path / "x.npz", e)
    e = episode(3)
    e["reward"] = e["reward"][:-1]
    with pytest.raises(ValueError, match="same length"):
        fmt.save_episode(tmp_path / "x.npz", e)


def test_toy_dataset_is_generated_once_with_a_manifest_and_reused(tmp_path):
    settings = make_env("toy/reach", 0).settings()
    episodes, manifest = load_dataset("toy/reach", 3, tmp_path, settings)
    directory = tmp_path / "toy.reach"
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk["episodes"] == 3 == len(episodes)
    assert on_disk["steps"] == 150 and on_disk["policy"] == "scripted"
    assert on_disk["success_rate"] == np.mean([e["success"].any() for e in episodes])
    assert on_disk["env"]["renderer"] == "numpy"
    stamp = (directory / "episode_000000.npz").stat().st_mtime_ns
    again, _ = load_dataset("toy/reach", 2, tmp_path, settings)  # fewer: reuse, no rewrite
    assert (directory / "episode_000000.npz").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again[1]["obs"], episodes[1]["obs"])
    more, _ = load_dataset("toy/reach", 5, tmp_path, settings)  # more: regenerated, same prefix
    assert len(more) == 5 and not list(tmp_path.glob("*.writing-*"))
    np.testing.assert_array_equal(more[2]["action"], episodes[2]["action"])


def test_dataset_made_with_other_settings_is_refused(tmp_path):
    settings = make_env("toy/reach", 0).settings()
    load_dataset("toy/reach", 1, tmp_path, settings)
    with pytest.raises(UserError, match="other env settings"):
        load_dataset("toy/reach", 1, tmp_path, {**settings, "step_scale": 1.0})


def test_a_metaworld_dataset_is_reused_although_its_settings_hold_tuples(tmp_path):
    env = make_env("metaworld/door-open", 0)
    settings = env.settings()  # camera lookat and hand start are tuples; JSON makes them lists
    env.close()
    load_dataset("metaworld/door-open", 1, tmp_path, settings)
    manifest = tmp_path / "metaworld.door-open" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    episodes, _ = load_dataset("metaworld/door-open", 1, tmp_path, settings)
    assert manifest.stat().st_mtime_ns == stamp and len(episodes) == 1
