"""Damaged datasets stop a launch before any run starts: exit 2, the file and the fix named,
nothing written and nothing in the dataset changed. Also the `data` command's own checks and
its staging directories."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from harness.cli import main
from harness.data import format as fmt
from harness.data.store import remove_abandoned_staging, write_dataset
from tests.helpers import episode, small_suite

TASKS = ("toy/reach", "toy/reach-state")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Three episodes of each toy task, made once by `python -m harness data toy`."""
    directory = tmp_path_factory.mktemp("pristine")
    assert main(["data", "toy", "--episodes", "3", "--data-dir", str(directory)]) == 0
    return directory


@pytest.fixture
def data(pristine, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(tmp_path, data, capsys, *expected, task="toy/reach", dry_run=False):
    """A suite of `task` on `data` exits 2 naming every `expected`, with no results written and
    the dataset left as it was."""
    before = snapshot(data)
    suite = small_suite(tmp_path, tasks=f"[{task}]", protocol={"dataset_episodes": 3})
    results = tmp_path / "results"
    argv = ["run", str(suite), "--results", str(results), "--data-dir", str(data)]
    assert main(argv + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert not results.exists()
    assert snapshot(data) == before
    return err


def test_a_whole_dataset_is_accepted(tmp_path, data, capsys):
    suite = small_suite(tmp_path, protocol={"dataset_episodes": 3})
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--data-dir", str(data),
                 "--dry-run"]) == 0


def test_manifest_claiming_more_episodes_than_files(tmp_path, data, capsys):
    path = data / "toy.reach" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "episodes": 5}))
    refused(tmp_path, data, capsys, f"{data / 'toy.reach'} holds 3 episode files, but its "
            "manifest says 5 (missing episode_000003.npz, episode_000004.npz)",
            f"Delete {data / 'toy.reach'}; the next run (or python -m harness data) makes it again")


def test_a_deleted_episode_file(tmp_path, data, capsys):
    (data / "toy.reach" / "episode_000001.npz").unlink()
    refused(tmp_path, data, capsys, "holds 2 episode files, but its manifest says 3 (missing "
            "episode_000001.npz)")
    refused(tmp_path, data, capsys, "missing episode_000001.npz", dry_run=True)


def test_an_episode_file_the_manifest_does_not_name(tmp_path, data, capsys):
    shutil.copy(data / "toy.reach" / "episode_000000.npz", data / "toy.reach" / "episode_000007.npz")
    refused(tmp_path, data, capsys, "not in the manifest episode_000007.npz")


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_and_empty_episode_files(tmp_path, data, capsys, keep):
    path = data / "toy.reach" / "episode_000002.npz"
    content = path.read_bytes()
    path.write_bytes(content[:int(len(content) * keep)])
    refused(tmp_path, data, capsys, f"{path} ({int(len(content) * keep)} bytes) cannot be read",
            "the next run (or python -m harness data) makes it again")


@pytest.mark.parametrize("text,expected", [
    ('{"episodes": 3,', "cannot be read as JSON"),
    ("", "cannot be read as JSON"),
    ("[1, 2]", "is not a dataset manifest: it is not a JSON object"),
    ('{"format_version": 1, "task": "toy/reach", "episodes": 3}', "'env' is missing or not dict"),
    ('{"format_version": 1, "task": "toy/reach", "episodes": "3", "env": {}}',
     "'episodes' is missing or not int"),
])
def test_bad_manifests(tmp_path, data, capsys, text, expected):
    path = data / "toy.reach" / "manifest.json"
    path.write_text(text)
    refused(tmp_path, data, capsys, str(path), expected)


def test_nan_in_a_manifest_is_not_json(tmp_path, data, capsys):
    path = data / "toy.reach" / "manifest.json"
    path.write_text(path.read_text().replace('"average_return": ', '"average_return": NaN, "x": '))
    refused(tmp_path, data, capsys, "NaN is not a JSON value")


def test_a_manifest_of_another_task(tmp_path, data, capsys):
    path = data / "toy.reach" / "manifest.json"
    path.write_text(path.read_text().replace('"task": "toy/reach"', '"task": "toy/other"', 1))
    refused(tmp_path, data, capsys, "is the manifest of toy/other, not toy/reach")


def _rewrite(path, **changes):
    with np.load(path) as archive:
        content = {k: archive[k] for k in archive.files}
    np.savez_compressed(path, **{**content, **changes})


def test_wrong_observation_shape_and_dtype(tmp_path, data, capsys):
    path = data / "toy.reach" / "episode_000001.npz"
    with np.load(path) as archive:
        obs = archive["obs"]
    _rewrite(path, obs=obs[:, ::2, ::2])
    refused(tmp_path, data, capsys, f"{path}", "is not a valid episode: 'obs' is uint8 (51, 32, 32, 3), "
            "but toy/reach needs uint8 (51, 64, 64, 3)")
    _rewrite(path, obs=obs.astype(np.float32))
    refused(tmp_path, data, capsys, "'obs' is float32 (51, 64, 64, 3), but toy/reach needs uint8")


def test_nan_observations_and_actions(tmp_path, data, capsys):
    path = data / "toy.reach-state" / "episode_000000.npz"
    with np.load(path) as archive:
        obs, action = archive["obs"].copy(), archive["action"].copy()
    obs[3, 1] = np.nan
    _rewrite(path, obs=obs)
    refused(tmp_path, data, capsys, f"{path}", "'obs' holds 1 NaN or infinite values",
            task="toy/reach-state")
    action[:2] = np.inf
    _rewrite(path, obs=np.nan_to_num(obs), action=action)
    refused(tmp_path, data, capsys, "'action' holds 4 NaN or infinite values", task="toy/reach-state")


def test_data_command_checks_every_episode_and_refuses_zero(tmp_path, data, capsys):
    path = data / "toy.reach" / "episode_000002.npz"
    path.write_bytes(b"")
    assert main(["data", "toy", "--episodes", "1", "--data-dir", str(data)]) == 2
    assert f"{path} (0 bytes) cannot be read" in capsys.readouterr().err
    empty = tmp_path / "empty"
    assert main(["data", "toy", "--episodes", "0", "--data-dir", str(empty)]) == 2
    assert "--episodes must be in [1, 100000], got 0" in capsys.readouterr().err
    assert not empty.exists()


def test_interrupted_writes_leave_no_staging_directory(tmp_path):
    target = tmp_path / "toy.reach"

    class Interrupted(BaseException):
        pass

    class Exploding(dict):
        def __getitem__(self, key):
            raise Interrupted

    good = episode(5)
    with pytest.raises(Interrupted):
        write_dataset(target, [good, Exploding(good)], {"task": "toy/reach", "episodes": 2, "env": {}})
    assert list(tmp_path.iterdir()) == []


def test_staging_left_by_a_killed_writer_is_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "toy.reach"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    abandoned = [tmp_path / f"toy.reach.writing-{dead}", tmp_path / f"toy.reach.old-{dead}"]
    live = tmp_path / f"toy.reach.writing-{os.getppid()}"
    unrelated = tmp_path / "toy.reach-state.writing-1"
    for directory in abandoned + [live, unrelated]:
        directory.mkdir()
        (directory / "episode_000000.npz").write_bytes(b"partial")
    write_dataset(target, [episode(5)], {"task": "toy/reach", "episodes": 1, "env": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["toy.reach", live.name, unrelated.name])
    assert remove_abandoned_staging(target) == []
    assert fmt.read_manifest(target)["episodes"] == 1


def test_a_writer_killed_between_its_two_renames_loses_no_data(tmp_path):
    """It had moved the old dataset aside and not yet moved the new one in: the old one is put
    back, and the next write replaces it as usual."""
    target = tmp_path / "toy.reach"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    write_dataset(target, [episode(5), episode(6)], {"task": "toy/reach", "episodes": 2, "env": {}})
    os.replace(target, tmp_path / f"toy.reach.old-{dead}")
    assert remove_abandoned_staging(target) == []
    assert fmt.read_manifest(target)["episodes"] == 2
    assert len(fmt.episode_paths(target)) == 2


def test_a_dataset_path_that_is_a_file_is_left_alone(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "toy.reach").write_text("my notes")
    refused(tmp_path, data, capsys, "should be toy/reach's dataset directory but is a file")
    assert main(["data", "toy", "--episodes", "1", "--data-dir", str(data)]) == 2
    assert (data / "toy.reach").read_text() == "my notes"
    assert sorted(p.name for p in data.iterdir()) == ["toy.reach"]


def test_absurd_episode_counts_and_missing_statistics(tmp_path, data, capsys):
    path = data / "toy.reach" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "episodes": 10**14}))
    refused(tmp_path, data, capsys, "'episodes' is 100000000000000, not in [0, 10000000]")
    del manifest["success_rate"]
    path.write_text(json.dumps(manifest))
    assert main(["data", "toy", "--episodes", "2", "--data-dir", str(data)]) == 0
    assert "None" in capsys.readouterr().out


def test_an_episode_file_that_is_a_directory(tmp_path, data, capsys):
    path = data / "toy.reach" / "episode_000001.npz"
    path.unlink()
    path.mkdir()
    refused(tmp_path, data, capsys, f"{path} (a directory) cannot be read")


def test_metaworld_state_datasets_are_checked_and_bad_names_refused(tmp_path, capsys):
    """The state family gets the same checks: a pixel episode (or a truncated state vector)
    in its dataset stops the launch naming the file; misspelt and versioned names are refused."""
    from harness.envs import task_info
    from harness.errors import UserError

    data = tmp_path / "data"
    assert main(["data", "metaworld-state", "--tasks", "door-open", "--episodes", "2",
                 "--data-dir", str(data)]) == 0
    path = data / "metaworld-state.door-open" / "episode_000001.npz"
    with np.load(path) as archive:
        obs = archive["obs"]
    assert obs.shape == (201, 39) and obs.dtype == np.float32
    _rewrite(path, obs=obs[:, :36])
    before = snapshot(data)
    suite = small_suite(tmp_path, tasks="[metaworld-state/door-open]",
                        protocol={"dataset_episodes": 2, "online_env_steps": 400})
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{path}" in err and ("'obs' is float32 (201, 36), but metaworld-state/door-open "
                                 "needs float32 (201, 39)") in err
    assert not (tmp_path / "r").exists() and snapshot(data) == before
    for name, words in (("metaworld-state/door-open-v3", "without the version suffix, e.g. "
                         "'metaworld-state/door-open'"),
                        ("metaworld-state/dor-open", "Did you mean 'door-open'?")):
        with pytest.raises(UserError, match=words):
            task_info(name)


def test_a_linked_dataset_with_too_few_episodes_is_never_written_over(tmp_path, pristine, capsys):
    """A dataset directory that links to a shared one (3 episodes) while the suite needs 5."""
    shared = tmp_path / "shared"
    shutil.copytree(pristine, shared)
    before = snapshot(shared)
    data = tmp_path / "data"
    data.mkdir()
    (data / "toy.reach").symlink_to(shared / "toy.reach")
    suite = small_suite(tmp_path, protocol={"dataset_episodes": 5})
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "is a link to" in err and "a linked dataset is never written over" in err
    assert "Traceback" not in err
    assert snapshot(shared) == before
    assert sorted(p.name for p in data.iterdir()) == ["toy.reach"]  # no .old-PID link behind
    assert (data / "toy.reach").is_symlink()
