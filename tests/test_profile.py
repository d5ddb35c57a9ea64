"""Where a run's time goes (harness.timings, harness.profile): every part of the loop is
timed with the units it did, and the projection multiplies costs by a schedule's units."""

import json
import math

import pytest

from harness import profile
from harness.envs import task_info
from harness.suite import load_suite


def test_a_finished_run_records_the_time_and_units_of_each_part(data_dir):
    result = profile.profile_in_fresh_process("bc", "debug", "toy/reach-state", 2, data_dir)
    t, info = result["timings"], task_info("toy/reach-state")
    assert result["steps_per_call"] == 2
    # 2 offline calls of K = 2 (the first one timed apart), then 3 episodes of one call each.
    assert t["first_update_call"]["units"] == 1
    assert t["offline_update"]["units"] == 2 and t["online_update"]["units"] == 6
    assert t["replay_sampling"]["units"] == 10
    # The toy episodes run to their time limit here; the first one is timed apart.
    assert t["first_collection"]["units"] == info.episode_steps
    collected = t["collection"]["units"]
    assert collected == 2 * info.episode_steps
    for part in ("collection.act", "collection.render", "collection.physics_and_rest"):
        assert t[part]["units"] == collected
    parts = sum(t[p]["seconds"] for p in ("collection.act", "collection.render",
                                          "collection.physics_and_rest"))
    assert parts == pytest.approx(t["collection"]["seconds"], rel=1e-3)
    assert t["collection.render"]["seconds"] == 0.0  # the state task renders nothing
    # Evaluations after the offline phase and after episode 3, 10 episodes each.
    assert t["first_evaluation"]["units"] == t["evaluation"]["units"] == 10 * info.episode_steps
    assert t["checkpoint"]["units"] == 4 and t["episode_file"]["units"] == 3
    assert t["logs"]["units"] > 0
    memory = result["memory"]
    assert memory["replay_entries"] == (10 + 3) * (info.episode_steps + 1)
    assert 0 < memory["replay_bytes"] <= memory["replay_allocated_bytes"] \
        < memory["peak_rss_mb"] * 2**20
    assert all(e["seconds"] >= 0 for e in t.values())
    # The parts lie within the run's wall time (status writes also happen before it starts).
    assert sum(e["seconds"] for p, e in t.items() if "." not in p and p != "logs") \
        <= result["wall_time"]


def test_metaworld10s_schedule_in_units():
    spec = load_suite("metaworld10").runs()[0]
    units = profile.schedule_units(spec.protocol, spec.checkpoint, task_info(spec.task))
    assert units["offline_update"] == 10_000
    assert units["online_update"] == 1250 * 20  # 500,000 simulator steps = 1,250 episodes
    assert units["first_collection"] == 1 and units["collection.act"] == 249_800
    assert units["evaluation"] == 125 * 10 * 200  # 126 evaluations, the first one apart
    assert units["checkpoint"] == 1 + 1250 // spec.checkpoint.every_episodes
    assert units["logs"] == 2 * math.ceil(35_000 / spec.protocol.train_log_every) + 3 * 126 \
        + 2 * units["checkpoint"]


def test_the_projection_is_cost_per_unit_times_units():
    timings = {"first_update_call": {"seconds": 36.0, "units": 1},
               "offline_update": {"seconds": 2.0, "units": 4},
               "evaluation": {"seconds": 1.0, "units": 100},
               "first_evaluation": {"seconds": 7.2, "units": 100}}
    units = {part: 0 for part, _ in profile.PARTS}
    units.update(first_update_call=1, offline_update=7200, evaluation=36_000, first_evaluation=1)
    rows = {r["part"]: r for r in profile.project({"timings": timings, "steps_per_call": 1},
                                                  units)}
    assert rows["offline_update"]["ms_per_unit"] == 500.0
    assert rows["offline_update"]["hours"] == pytest.approx(1.0)
    assert rows["evaluation"]["hours"] == pytest.approx(0.1)
    assert rows["first_update_call"]["hours"] == pytest.approx(0.01)
    assert rows["first_evaluation"]["hours"] == pytest.approx(0.002)  # once, not per step
    assert rows["online_update"]["hours"] == 0.0  # not profiled: nothing projected


def test_bench_run_refuses_what_it_cannot_profile(capsys):
    from harness.cli import main

    assert main(["bench", "--only", "run", "--algorithms", "bc-torch"]) == 2
    assert "profiles built-in algorithms" in capsys.readouterr().err


def test_a_profile_run_that_fails_says_how(data_dir):
    with pytest.raises(RuntimeError, match=r"the profile run of bc \(no-such-preset\) exited "
                                           r"with status 1"):
        profile.profile_in_fresh_process("bc", "no-such-preset", "toy/reach-state", 2, data_dir)
