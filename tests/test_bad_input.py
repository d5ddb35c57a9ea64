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


# -- cases found by probing the CLI with ~100 malformed inputs --------------------------------

def test_list_and_mapping_config_values_still_expand_into_runs(tmp_path, capsys):
    """Entries with list or mapping values are not hashable; expanding the runs used them as
    dict keys and crashed on valid suites."""
    path = small_suite(tmp_path, algorithms="[{name: bc, preset: debug, config: {hidden_dims: "
                       "[64, 64]}}, {name: dreamerv2, preset: debug, config: "
                       "{world_model_overrides: {deter: 16}}}]", protocol={"offline_steps": 40,
                                                                           "updates_per_episode": 40})
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "t/toy.reach/dreamerv2/seed0" in capsys.readouterr().out


@pytest.mark.parametrize("config,expected", [
    ("{world_model_overrides: [1]}", "expected a mapping of field names to values, got [1]"),
    ("{world_model_overrides: null}", "expected a mapping of field names to values, got None"),
    ("{world_model_overrides: {1: 2}}", "expected a mapping of field names to values"),
    ("{actor_lr: 1e-3}", "YAML reads '1e-3' as text; write it with a dot, e.g. 1.0e-3"),
    ("{actor_lr: " + "9" * 400 + "}", "is too large for a float"),
])
def test_bad_config_value_types(tmp_path, capsys, config, expected):
    path = small_suite(tmp_path, algorithms=f"[{{name: dreamerv2, preset: debug, config: {config}}}]",
                       protocol={"offline_steps": 40, "updates_per_episode": 40})
    refused(["run", str(path)], tmp_path, capsys, expected)


def test_latent_buffer_agents_check_their_world_model_before_running(tmp_path, capsys):
    path = small_suite(tmp_path, algorithms="[{name: lompo, config: {world_model: nosuch}}]")
    refused(["run", str(path)], tmp_path, capsys, "has no preset 'nosuch'")
    path = small_suite(tmp_path, algorithms="[{name: combo, config: {world_model_overrides: "
                                            "{deter: -5}}}]")
    refused(["run", str(path)], tmp_path, capsys, "world_model.config.deter must be in [1, 1000000]")


def test_numbers_past_what_python_or_floats_hold(tmp_path, capsys):
    path = small_suite(tmp_path, seeds="9" * 5000)
    refused(["run", str(path)], tmp_path, capsys, "a value cannot be read (Exceeds the limit")
    path = small_suite(tmp_path)
    path.write_text(path.read_text() + "checkpoint: {every_minutes: " + "9" * 400 + "}\n")
    refused(["run", str(path)], tmp_path, capsys, "every_minutes a number in [0, 1e9)")


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path, capsys):
    """Nine levels of ten aliases: 10^9 values from a 600-byte file."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = small_suite(tmp_path)
    path.write_text("\n".join(lines) + "\n" + path.read_text().replace("tasks: [toy/reach]",
                                                                        "tasks: *a8"))
    start = time.monotonic()
    refused(["run", str(path)], tmp_path, capsys, "more than 1000000 values once its aliases")
    assert time.monotonic() - start < 10


def test_symlink_loops_and_unknown_home_directories(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(loop / "x")]) == 2
    assert "cannot be created or written" in capsys.readouterr().err
    assert main(["run", str(path), "--results", "~no-such-user-here/x"]) == 2
    assert "cannot be created or written" in capsys.readouterr().err
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--data-dir", ""]) == 2
    assert "--data-dir '': give a directory path" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_status_and_report_survive_unreadable_and_damaged_results(tmp_path, capsys):
    results = tmp_path / "results"
    run_dir = results / "t" / "toy.reach" / "bc" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text('{"state": "running", "host": "elsewhere", '
                                         '"heartbeat": "abc", "error": 5, "progress": [1]}')
    assert main(["status", "--results", str(results)]) == 0
    assert "stale" in capsys.readouterr().out
    (run_dir / "status.json").unlink()
    (run_dir / "status.json").mkdir()
    assert main(["status", "--results", str(results)]) == 0
    assert "damaged" in capsys.readouterr().out
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(results), "--dry-run"]) == 2
    assert f"{run_dir / 'status.json'} cannot be read" in capsys.readouterr().err
    (run_dir / "config.yaml").mkdir()
    main(["report", "--results", str(results), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert "config.yaml is not a regular file" in err and "Traceback" not in err
    if os.path.isdir("/proc/self"):
        assert main(["status", "--results", "/proc"]) == 0
        assert main(["report", "--results", "/proc", "--out", str(tmp_path / "o")]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_report_out_and_status_results_are_checked(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", "--results", str(tmp_path), "--out", str(blocker)]) == 2
    assert f"Pass --out with a writable path" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path), "--out", ""]) == 2
    assert main(["status", "--results", str(blocker)]) == 2
    assert "is a file; give the results directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["status", "--state", "bogus"])
    assert caught.value.code == 2


def test_a_suite_folder_that_is_a_file_is_refused(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "t").write_text("not a folder")
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(results)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert (results / "t").read_text() == "not a folder"


def test_set_with_an_empty_key_names_the_flag(tmp_path, capsys):
    path = small_suite(tmp_path)
    refused(["run", str(path), "--set", "=3"], tmp_path, capsys, "--set =3: '' is not a field")
    refused(["run", str(path), "--set", "protocol.=1"], tmp_path, capsys, "--set protocol.=1:")


def test_yaml_errors_are_one_line(tmp_path, capsys):
    path = write_suite(tmp_path, "name: t\ntasks: [toy/reach\n")
    err = refused(["run", str(path)], tmp_path, capsys, "not valid YAML")
    assert err.count("\n") == 1


@pytest.mark.parametrize("label,accepted", [
    ("👨\u200d👩\u200d👧", True),  # zero-width joiners inside an emoji
    ("bc\u00a0fast", True),  # a no-break space
    ("\u200fبي", True),  # a right-to-left mark
    ("bc\u2028x", False),  # a line separator
    ("bc\x1bx", False),  # an escape
])
def test_unicode_labels_that_folders_can_hold(tmp_path, capsys, label, accepted):
    from harness.suite import check_folder_name
    from harness.errors import UserError

    if accepted:
        check_folder_name("x", "label", label)
    else:
        with pytest.raises(UserError, match="contains a control character"):
            check_folder_name("x", "label", label)


def test_data_command_flags(tmp_path, capsys):
    assert main(["data", "toy", "--tasks", "nosuch", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--tasks is for metaworld, metaworld-state and kitchen" in capsys.readouterr().err
    assert main(["data", "kitchen", "--minari-dir", "", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--minari-dir ''" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_empty_data_variable_and_bad_fault_values_are_user_errors(tmp_path, monkeypatch, capsys):
    from harness import faults
    from harness.errors import UserError

    monkeypatch.setenv("MOTO_HARNESS_DATA", "")
    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    assert "MOTO_HARNESS_DATA is set but empty" in capsys.readouterr().err
    monkeypatch.setenv("MOTO_HARNESS_FAULT", "update:abc")
    with pytest.raises(UserError, match="write POINT:N with N a positive integer"):
        faults.point("update")


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`status | head -1`: the reader goes away; no BrokenPipeError traceback."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "harness", "list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err
