"""Bad paths, files and command-line values: exit 2, a message naming the input and the fix,
nothing written. (Bad suite contents are in test_suite_validation.py, bad datasets in
test_dataset_checks.py.)"""

import os
import time

import pytest

from harness.cli import main
from tests.helpers import small_suite, write_suite


def refused(argv, tmp_path, capsys, *expected):
    """`argv` (a `run` command, given --results under tmp_path) exits 2 with every `expected`
    on stderr, and creates no results directory."""
    results = tmp_path / "results"
    assert main([*argv, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert not results.exists()
    return err


def test_a_directory_or_an_empty_name_is_not_a_suite(tmp_path, capsys):
    refused(["run", str(tmp_path)], tmp_path, capsys, "is a directory; give the YAML file in it")
    refused(["run", ""], tmp_path, capsys, "suite '': give a suite file")
    refused(["run", "bad\0name"], tmp_path, capsys, "give a suite file")


def test_a_suite_that_is_not_utf8_text_is_refused(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    refused(["run", str(path)], tmp_path, capsys, "not UTF-8 text (byte 9 is 0xe9)", str(path))


def test_devices_and_pipes_are_refused_without_reading_them(tmp_path, capsys):
    """Reading /dev/zero as a suite would never end."""
    start = time.monotonic()
    refused(["run", "/dev/zero"], tmp_path, capsys, "not a regular file")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    refused(["run", str(fifo)], tmp_path, capsys, "not a regular file")
    assert time.monotonic() - start < 10


def test_a_key_given_twice_is_refused_not_silently_overridden(tmp_path, capsys):
    path = small_suite(tmp_path)
    path.write_text(path.read_text() + "seeds: [0, 1, 2]\n")
    refused(["run", str(path)], tmp_path, capsys, "key 'seeds' is given twice in one mapping "
            "(lines 4 and 13)")
    nested = write_suite(tmp_path, "name: t\ntasks: [toy/reach]\nalgorithms: [bc]\nseeds: 1\n"
                                   "protocol: {offline_steps: 1, offline_steps: 2}\n", "n.yaml")
    refused(["run", str(nested)], tmp_path, capsys, "key 'offline_steps' is given twice")


def test_yaml_merge_keys_still_work(tmp_path):
    """`<<` merges are not duplicates: explicit keys override merged ones, as YAML says."""
    from harness.suite import load_suite

    path = write_suite(tmp_path, """\
        name: t
        tasks: [toy/reach]
        algorithms:
          - &base {name: bc, preset: debug, config: {lr: 0.001}}
          - {<<: *base, label: bc-b, preset: paper}
        seeds: 1
        protocol: {offline_steps: 10, online_env_steps: 100, updates_per_episode: 10,
                   eval_every_episodes: 1, eval_episodes: 1, dataset_episodes: 1}
        """)
    entries = load_suite(str(path)).algorithms
    assert [(e.label, e.preset, e.overrides) for e in entries] == [
        ("bc", "debug", {"lr": 0.001}), ("bc-b", "paper", {"lr": 0.001})]


def test_set_with_a_value_that_is_not_yaml(tmp_path, capsys):
    path = small_suite(tmp_path)
    refused(["run", str(path), "--set", "protocol.offline_steps=[1"], tmp_path, capsys,
            "--set protocol.offline_steps=[1: not valid YAML")
    refused(["run", str(path), "--set", "protocol.offline_steps={a: 1, a: 2}"], tmp_path, capsys,
            "key 'a' is given twice")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_results_under_a_pseudo_file_system_are_refused(tmp_path, capsys):
    """/proc passes a permission check as root, but nothing can be made there."""
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", "/proc/moto-results"]) == 2
    err = capsys.readouterr().err
    assert "directory /proc/moto-results cannot be created or written" in err
    assert "Pass --results with a writable path" in err
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--data-dir", "/proc/d"]) == 2
    assert "Pass --data-dir with a writable path" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_write_check_leaves_nothing_behind(tmp_path):
    path = small_suite(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run",
                 "--data-dir", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_duplicate_checks_are_linear():
    """Counting each seed in the list made checking 99,999 seeds take 96 s (20,000: 5.6 s)."""
    from harness.suite import parse_seeds

    start = time.monotonic()
    assert len(parse_seeds("x", list(range(99_999)))) == 99_999
    assert time.monotonic() - start < 2


def test_dry_run_of_twenty_thousand_runs_is_quick(tmp_path, capsys):
    """20,000 runs, as 2,000 labels x 10 seeds and as one 20,000-seed list: a few seconds,
    most of it YAML parsing and one status lookup per run."""
    algorithms = "[" + ", ".join(f"{{name: bc, preset: debug, label: b{i}}}" for i in range(2000)) + "]"
    path = small_suite(tmp_path, algorithms=algorithms, seeds="10")
    (tmp_path / "second").mkdir()
    seeds = small_suite(tmp_path / "second", seeds="[" + ", ".join(map(str, range(20000))) + "]",
                        name="many-seeds")
    start = time.monotonic()
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    assert main(["run", str(seeds), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert "suite t: 20000 runs" in out and "suite many-seeds: 20000 runs" in out
    assert elapsed < 30, elapsed


@pytest.mark.parametrize("argv,expected", [
    (["bench", "--steps", "0"], "--steps must be in [1, 1000000], got 0"),
    (["bench", "--update-calls", "-3"], "--update-calls must be in [1, 100000], got -3"),
    (["bench", "--only", "updates", "--steps-per-call", "0"], "--steps-per-call must be in [1, 1000]"),
    (["bench", "--tasks", "door-opn"], "Did you mean 'door-open'"),
    (["bench", "--algorithms", "mot"], "unknown algorithm 'mot'"),
])
def test_bench_flags_are_checked_before_anything_is_timed(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr()
    assert expected in err.err and "machine:" not in err.out
