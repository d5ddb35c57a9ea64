"""Suites: parsing, expansion, and every kind of bad input -> exit 2, a clear message, no files."""

import pytest

from algorithms.base import implemented
from harness.cli import main
from harness.suite import load_suite
from tests.helpers import small_suite, write_suite


def test_smoke_suite_expands_to_stable_unique_run_ids():
    suite = load_suite("smoke")
    ids = [r.run_id for r in suite.runs()]
    assert len(ids) == len(set(ids)) == len(suite.tasks) * len(suite.algorithms) * len(suite.seeds)
    assert "smoke/metaworld.door-open/bc/seed0" in ids
    assert ids == [r.run_id for r in load_suite("smoke").runs()]
    assert {a.name for a in suite.algorithms} == set(implemented())  # every one, PyTorch too


def test_labels_let_one_algorithm_appear_twice_and_seed_counts_expand(tmp_path):
    path = small_suite(tmp_path, seeds="3", algorithms="[{name: bc, preset: debug}, "
                       "{name: bc, preset: debug, label: bc-lr, config: {lr: 0.001}}]")
    suite = load_suite(str(path))
    assert suite.seeds == (0, 1, 2)
    assert [a.label for a in suite.algorithms] == ["bc", "bc-lr"]
    assert suite.algorithms[1].overrides == {"lr": 0.001}
    assert len(suite.runs()) == 6


def test_set_overrides_a_protocol_value(tmp_path):
    suite = load_suite(str(small_suite(tmp_path)), ["protocol.offline_steps=70"])
    assert suite.protocol.offline_steps == 70


def assert_rejected(path, tmp_path, capsys, expected):
    """Running the suite exits 2, says `expected` on stderr, and creates no results dir."""
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


BAD_SUITES = {
    "unknown task suggests closest": ("tasks: [metaworld/door-opn]", "Did you mean 'door-open'"),
    "unknown algorithm suggests closest": ("algorithms: [bcc]", "Did you mean 'bc'"),
    "latent buffer too small": ("algorithms: [{name: lompo, config: {real_capacity: 10}}]",
                                "lompo.config.real_capacity (10) must hold one refresh's"),
    "negative penalty": ("algorithms: [{name: combo, config: {conservative_weight: -1}}]",
                         "combo.config.conservative_weight must be >= 0"),
    "negative seed": ("seeds: [0, -1]", "seeds must be integers in [0, 100000)"),
    "duplicate seeds": ("seeds: [1, 1]", "duplicate seeds"),
    "wrong type": ("seeds: zero", "'seeds'"),
    "unknown preset": ("algorithms: [{name: bc, preset: tiny}]", "no preset 'tiny'"),
    "unknown config field": ("algorithms: [{name: bc, config: {lrate: 1}}]", "Did you mean 'lr'"),
    "wrong config type": ("algorithms: [{name: bc, config: {batch_size: big}}]", "batch_size"),
    "duplicate label": ("algorithms: [bc, bc]", "share the label"),
    "unknown field": ("taks: [toy/reach]", "Did you mean 'tasks'"),
    "NaN learning rate": ("algorithms: [{name: sac, preset: debug, config: {lr: .nan}}]",
                          "sac.config.lr must be in (0, 1], got nan"),
    "infinite learning rate": ("algorithms: [{name: iql, config: {lr: .inf}}]",
                               "iql.config.lr must be in (0, 1], got inf"),
    "negative learning rate": ("algorithms: [{name: dreamerv2, config: {actor_lr: -0.001}}]",
                               "dreamerv2.config.actor_lr must be in (0, 1], got -0.001"),
    "world model learning rate": ("algorithms: [{name: moto, config: {world_model_overrides: "
                                  "{lr: 0}}}]", "world_model.config.lr must be in (0, 1], got 0.0"),
    "discount above 1": ("algorithms: [{name: cql, config: {discount: 1.5}}]",
                         "cql.config.discount must be in (0, 1], got 1.5"),
    "inverted log-std bounds": ("algorithms: [{name: sac, config: {log_std_min: 3, log_std_max: 2}}]",
                                "sac.config.log_std_min (3.0) must be below log_std_max (2.0)"),
    "batch size past any memory": ("algorithms: [{name: bc, config: {batch_size: 10000000}}]",
                                   "bc.config.batch_size must be in [1, 16384], got 10000000"),
    "huge network": ("algorithms: [{name: bc, config: {hidden_dims: [256, 100000000]}}]",
                     "bc.config.hidden_dims must hold values in [1, 1000000]"),
    "seed count past the seed limit": ("seeds: 100001", "'seeds: N' needs 1 <= N <= 100000"),
    "label too long for a folder": ("algorithms: [{name: bc, label: " + "x" * 300 + "}]",
                                    "'label' becomes a folder name and is longer than 100 bytes"),
    "NUL in a label": ('algorithms: [{name: bc, label: "a\\0b"}]',
                       "'label' becomes a folder name and contains a control character"),
    "newline in a name": ('name: "t\\nx"', "'name' becomes a folder name and contains a control"),
    "sbatch value on two lines": ('algorithms: [{name: bc, resources: {sbatch: {comment: "a\\nb"}}}]',
                                  "need a plain value (a string, number or true, on one line)"),
    "sbatch value that would inject flags": (
        "algorithms: [{name: bc, resources: {sbatch: {wckey: \"\\\\'\\\\' --hold --time=1 "
        "--array=0-4 --output=/tmp/x-%A_%a.out --job-name=INJECTED #\"}}}]",
        "sbatch value(s) {'wckey': \"\\\\'\\\\' --hold"),
    "sbatch value with a backslash": ('algorithms: [{name: bc, resources: {sbatch: {comment: "a\\\\b"}}}]',
                                      "hold characters sbatch could read as the end of the flag"),
    "sbatch value with a quote": ("algorithms: [{name: bc, resources: {sbatch: {comment: \"it's\"}}}]",
                                  "hold characters sbatch could read as the end of the flag"),
    "sbatch value with a hash": ('algorithms: [{name: bc, resources: {sbatch: {comment: "a#b"}}}]',
                                 "hold characters sbatch could read as the end of the flag"),
    "sbatch value with a space": ('algorithms: [{name: bc, resources: {sbatch: {comment: "a b"}}}]',
                                  "hold characters sbatch could read as the end of the flag"),
    "partition with a quote": ("algorithms: [{name: bc, resources: {partition: \"gpu'\"}}]",
                               "'partition' must be a name with no spaces, quotes"),
    "sbatch flag written with dashes": ("algorithms: [{name: bc, resources: {sbatch: {--exclude: n1}}}]",
                                        "sbatch flag name(s) ['--exclude'] are not flag names"),
}


def _suite_with(tmp_path, line):
    base = {"name": "name: t", "tasks": "tasks: [toy/reach]",
            "algorithms": "algorithms: [{name: bc, preset: debug}]", "seeds": "seeds: [0]"}
    key = line.split(":")[0]
    base[key if key in base else "extra"] = line
    protocol = ("protocol: {offline_steps: 1, online_env_steps: 50, updates_per_episode: 1, "
                "eval_every_episodes: 1, eval_episodes: 1, dataset_episodes: 1}")
    return write_suite(tmp_path, "\n".join(base.values()) + "\n" + protocol + "\n")


@pytest.mark.parametrize("case", list(BAD_SUITES))
def test_bad_suite_exits_2_with_a_clear_message_and_writes_nothing(case, tmp_path, capsys):
    line, expected = BAD_SUITES[case]
    path = _suite_with(tmp_path, line)
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err
    assert not results.exists()


@pytest.mark.parametrize("protocol,expected", [
    ({"online_env_steps": 49}, "less than one episode of toy/reach (50 simulator steps)"),
    ({"offline_steps": -5}, "protocol.offline_steps must be in [0, 10000000], got -5"),
    ({"eval_episodes": 0}, "protocol.eval_episodes must be in [1, 10000], got 0"),
    ({"offline_steps": 10**13}, "protocol.offline_steps must be in [0, 10000000], got 10000000000000"),
    ({"dataset_episodes": 10**6}, "protocol.dataset_episodes must be in [1, 100000], got 1000000"),
    ({"online_env_steps": 10**9}, "protocol.online_env_steps must be in [1, 100000000]"),
])
def test_impossible_budgets_are_rejected(tmp_path, capsys, protocol, expected):
    path = small_suite(tmp_path, protocol=protocol)
    assert_rejected(path, tmp_path, capsys, expected)


def test_metaworld_budget_counts_action_repeat(tmp_path, capsys):
    path = small_suite(tmp_path, tasks="[metaworld/door-open]", protocol={"online_env_steps": 200})
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "400 simulator steps" in capsys.readouterr().err


def test_missing_protocol_field(tmp_path, capsys):
    path = write_suite(tmp_path, "name: t\ntasks: [toy/reach]\nalgorithms: [bc]\nseeds: [0]\n"
                                 "protocol: {offline_steps: 1}\n")
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "missing field 'online_env_steps'" in capsys.readouterr().err


def test_malformed_yaml(tmp_path, capsys):
    path = write_suite(tmp_path, "name: t\ntasks: [toy/reach\n")
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unwritable_results_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(blocker / "results")]) == 2
    assert "Pass --results with a writable path" in capsys.readouterr().err
    assert main(["run", str(path), "--results", str(tmp_path / "r"),
                 "--data-dir", str(blocker / "data")]) == 2
    assert "Pass --data-dir with a writable path" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_suite_name_suggests_a_shipped_one(capsys):
    assert main(["run", "smok"]) == 2
    assert "Did you mean 'smoke'" in capsys.readouterr().err


def test_only_filter_must_match_something(tmp_path, capsys):
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--only", "seed=9"]) == 2
    assert "matches no run" in capsys.readouterr().err
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--only", "colour=red"]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_shipped_paper_suites_name_the_paper_protocol_and_all_algorithms():
    import yaml

    from harness.suite import SUITES_DIR

    for name, tasks, per_episode in (("metaworld10", 10, 20), ("metaworld10-state", 10, 20),
                                     ("kitchen2", 2, 50)):
        raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
        assert len(raw["tasks"]) == tasks
        names = {a if isinstance(a, str) else a["name"] for a in raw["algorithms"]}
        assert names == {"moto", "dreamerv2", "lompo", "combo", "cql", "iql", "sac", "bc"}
        assert all(isinstance(a, str) or set(a) <= {"name", "config"} and
                   set(a.get("config", {})) <= {"steps_per_call"} for a in raw["algorithms"])
        assert raw["protocol"]["offline_steps"] == 10000
        assert raw["protocol"]["online_env_steps"] == 500000
        assert raw["protocol"]["updates_per_episode"] == per_episode
    state, pixels = (yaml.safe_load((SUITES_DIR / f"{n}.yaml").read_text())
                     for n in ("metaworld10-state", "metaworld10"))
    assert [t.replace("metaworld-state/", "metaworld/") for t in state["tasks"]] == pixels["tasks"]
    assert state["seeds"] == pixels["seeds"] == 5


def test_every_shipped_suite_loads_as_shipped():
    """kitchen2 and moto-ablations did not: 50 updates per episode is no multiple of the world
    models' 4 gradient steps per call, a rule that came after them."""
    from harness.suite import SUITES_DIR, load_suite

    paths = sorted(SUITES_DIR.glob("*.yaml"))
    assert len(paths) >= 12
    for path in paths:
        assert load_suite(str(path)).runs(), path.name


def test_the_evidence_suite_is_what_docs_results_describes():
    """4 MetaWorld tasks from states, all 8 algorithms at their cpu presets, 3 seeds, an
    offline phase and an online phase of at least 100 episodes (issue 23)."""
    from harness.suite import SUITES_DIR, load_suite

    suite = load_suite(str(SUITES_DIR / "evidence.yaml"))
    assert len(suite.tasks) >= 4 and all(t.startswith("metaworld-state/") for t in suite.tasks)
    assert {(a.name, a.preset) for a in suite.algorithms} == {
        (n, "cpu") for n in ("moto", "dreamerv2", "lompo", "combo", "cql", "iql", "sac", "bc")}
    assert list(suite.seeds) == [0, 1, 2]
    assert suite.protocol.offline_steps > 0
    assert suite.protocol.online_env_steps >= 100 * 400


@pytest.mark.parametrize("algorithms,expected", [
    ("[{name: bc, label: ../../x}]", "'label' becomes a folder name and is empty or starts with ."),
    ("[{name: bc, label: ''}]", "'label' becomes a folder name and is empty"),
    ("[{name: bc, config: {1: 2}}]", "config keys must be field names"),
    ("[{name: bc, config: {steps_per_call: 0}}]", "bc.config.steps_per_call must be in [1, 1000], got 0"),
    ("[{name: bc, config: {hidden_dims: [64, 0]}}]", "bc.config.hidden_dims must hold values in [1, 1000000], got (64, 0)"),
    ("[{name: moto, config: {horizon: -1}}]", "moto.config.horizon must be in [0, 1000], got -1"),
    ("[{name: bc, label: Fast}, {name: bc, label: fast}]",
     "the labels 'Fast' and 'fast' differ only by case or Unicode normalization"),
    ("[{name: bc, label: \"caf\u00e9\"}, {name: bc, label: \"cafe\u0301\"}]",
     "differ only by case or Unicode normalization"),
])
def test_bad_labels_and_config_values(tmp_path, capsys, algorithms, expected):
    path = small_suite(tmp_path, algorithms=algorithms)
    assert_rejected(path, tmp_path, capsys, expected)


def test_seeds_that_would_collide_with_evaluation_streams_are_rejected(tmp_path, capsys):
    path = small_suite(tmp_path, seeds="[0, 100000]")
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "seeds must be integers in [0, 100000)" in capsys.readouterr().err


def test_discrete_gym_tasks_are_rejected_before_running(tmp_path, capsys):
    path = small_suite(tmp_path, tasks="[gym/CartPole-v1]", protocol={"online_env_steps": 500})
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "discrete action space" in capsys.readouterr().err


def test_moto_suites_hold_the_papers_ablations_and_a_one_at_a_time_sweep():
    import yaml

    from harness.suite import SUITES_DIR

    raw = yaml.safe_load((SUITES_DIR / "moto-ablations.yaml").read_text())
    assert raw["tasks"] == ["kitchen/mixed", "kitchen/partial"]
    assert all(a["config"]["steps_per_call"] == 5 for a in raw["algorithms"])  # as kitchen2's
    variants = {a.get("label", a["name"]): {k: v for k, v in a["config"].items()
                                            if k != "steps_per_call"} for a in raw["algorithms"]}
    assert variants == {"moto": {}, "moto-no-bc": {"bc": False},
                        "moto-no-uncertainty": {"uncertainty": False},
                        "moto-no-bc-no-uncertainty": {"bc": False, "uncertainty": False},
                        "dreamerv2": {}}
    suite = load_suite("moto-sensitivity")
    swept = {tuple(r.algorithm.overrides.items()) for r in suite.runs()}
    assert swept == {(), (("horizon", 0),), (("horizon", 2),), (("horizon", 10),),
                     (("alpha", 0.3),), (("alpha", 3.0),), (("beta", 3.0),), (("beta", 30.0),)}


def test_suites_override_world_model_sizes_and_bad_keys_are_refused(tmp_path, capsys):
    import gymnasium as gym
    import jax
    import numpy as np

    from algorithms.base import get, make_config

    suite = load_suite(str(small_suite(tmp_path, algorithms=(
        "[{name: dreamerv2, preset: debug, config: {world_model_overrides: {deter: 8, hidden: 8}}}]"))))
    overrides = suite.algorithms[0].overrides
    obs = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    act = gym.spaces.Box(-1, 1, (2,), np.float32)

    def parameters(config_overrides):
        cls = get("dreamerv2")
        agent = cls(obs, act, make_config(cls, "debug", config_overrides), 0, 10)
        return sum(x.size for x in jax.tree.leaves(agent.state_dict()["train"]["params"]))

    assert parameters(overrides) < parameters({})
    path = small_suite(tmp_path, algorithms="[{name: moto, preset: debug, config: "
                                            "{world_model_overrides: {detr: 8}}}]")
    assert_rejected(path, tmp_path, capsys, "no config field 'detr'. Did you mean 'deter'?")
