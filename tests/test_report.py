"""The report: robust loading, what report.md says, and the figures' layout.

Every results tree here is written by hand (harness.report.synthetic lays runs out as the run
loop does), so each expectation is known before the report runs.
"""

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from harness import results as tree
from harness.cli import main
from harness.report import load, report
from harness.report.synthetic import write_run

matplotlib.use("Agg")

STEPS = [0, 400, 800, 1200]


def good_run(results, task="metaworld/door-open", label="bc", seed=0, success=(0.0, 0.2, 0.4, 0.6),
             **kwargs):
    return write_run(results, "s", task, label, seed, STEPS, success, **kwargs)


# Each corrupt metrics.csv or config.yaml, the words the warning must contain.
CORRUPT = {
    "empty metrics": ("metrics.csv", b"", "metrics.csv is empty"),
    "header only": ("metrics.csv", b"phase,grad_steps,env_steps,episodes,eval_success\r\n",
                    "no evaluation with a number"),
    "truncated": ("metrics.csv", None, "cut short"),
    "torn row": ("metrics.csv", b"phase,grad_steps,env_steps,eval_success\r\noffline,10,0,0.5\r\n"
                 b"online,20,400\r\n", "line 3 has 3 fields"),
    "garbage bytes": ("metrics.csv", bytes(range(256)) * 4, "not text"),
    "NUL bytes": ("metrics.csv", b"phase,env_steps\x00\x00\x00\x00", "NUL"),
    "non-numeric cell": ("metrics.csv", b"phase,grad_steps,env_steps,eval_success\r\n"
                         b"offline,10,0,0.5\r\nonline,20,400,abc\r\n",
                         "line 3, column eval_success: 'abc' is not a number"),
    "no success column": ("metrics.csv", b"phase,grad_steps,env_steps\r\noffline,1,0\r\n",
                          "no column eval_success"),
    "missing config": ("config.yaml", None, "config.yaml is missing"),
    "corrupt config": ("config.yaml", b"suite: [unclosed\n  task: {", "not valid YAML"),
    "config not a mapping": ("config.yaml", b"- just\n- a list\n", "not a mapping"),
    "config lacks keys": ("config.yaml", b"suite: s\nseed: 0\n", "lacks task"),
    "config garbage": ("config.yaml", b"\xff\xfe\x00garbage", "not text"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_run_is_skipped_with_a_warning_naming_the_file(tmp_path, capsys, case):
    results = tmp_path / "results"
    good_run(results, seed=0)
    bad = good_run(results, seed=1)
    name, content, words = CORRUPT[case]
    path = bad / name
    if case == "truncated":
        text = path.read_bytes()
        path.write_bytes(text[:-7])  # cut inside the last row
    elif content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    shown = f"s/metaworld.door-open/bc/seed1/{name}"
    assert f"warning: {shown}: " in err and words in err and "run skipped" in err, err
    report_md = (tmp_path / "out" / "s" / "report.md").read_text()
    assert f"| `{shown}` | " in report_md and words in report_md
    final = pd.read_csv(tmp_path / "out" / "s" / "final.csv")
    assert final.n.tolist() == [1] and final.seeds.astype(str).tolist() == ["0"]  # the good run only


def test_a_running_run_and_nan_rows_and_a_corrupt_status(tmp_path, capsys):
    results = tmp_path / "results"
    good_run(results, seed=0, success=(0.0, 0.1, 0.2, 0.3))
    nan_run = good_run(results, seed=1, success=(0.0, 0.5, 0.7, 0.9))
    text = nan_run.joinpath("metrics.csv").read_text().splitlines(keepends=True)
    fields = text[2].split(",")
    fields[4] = "nan"  # the evaluation at step 400 has no success value
    text[2] = ",".join(fields)
    nan_run.joinpath("metrics.csv").write_text("".join(text))
    running = good_run(results, seed=2, success=(0.0, 1.0, 1.0, 1.0), state="running")
    with open(running / "metrics.csv", "a") as f:
        f.write("online,99,1600,4,0.")  # the row being written
    odd = good_run(results, seed=3, success=(1.0, 1.0, 1.0, 1.0))
    (odd / "status.json").write_text("{not json")
    tree.run_dir(results, "s/metaworld.door-open/bc/seed4").mkdir(parents=True)  # submitted only
    loaded = load(results, warn=lambda message: None)
    states = {r.seed: r.state for r in loaded.runs}
    # No process holds the running run's lock on this host, so it shows as stale.
    assert states == {0: "finished", 1: "finished", 2: "stale", 3: "pending"}
    assert loaded.not_started == ["s/metaworld.door-open/bc/seed4"]
    assert len(next(r for r in loaded.runs if r.seed == 2).evaluations) == 4  # torn row dropped
    assert len(next(r for r in loaded.runs if r.seed == 1).evaluations) == 3  # NaN row dropped

    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "s/metaworld.door-open/bc/seed1/metrics.csv: 1 of 4 rows have no eval_success" in err
    final = pd.read_csv(tmp_path / "out" / "s" / "final.csv")
    # Seeds 0 and 1, last three evaluations each (seed 1: 0.0, 0.7, 0.9 once the NaN row is out).
    finals = [np.mean([0.1, 0.2, 0.3]), np.mean([0.0, 0.7, 0.9])]
    assert final.n.tolist() == [2] and final.seeds.astype(str).tolist() == ["0 1"]
    assert final["mean"].iloc[0] == pytest.approx(np.mean(finals))
    assert final["std"].iloc[0] == pytest.approx(np.std(finals, ddof=1))
    report_md = (tmp_path / "out" / "s" / "report.md").read_text()
    assert "2 finished runs reported; 3 unfinished" in report_md
    assert "| `s/metaworld.door-open/bc/seed2` | stale | " in report_md
    assert "| `s/metaworld.door-open/bc/seed3` | pending | no status.json |" in report_md
    assert "| `s/metaworld.door-open/bc/seed4` | pending | not started | 0 |" in report_md
    assert "1 of 4 rows have no eval_success" in report_md


def test_report_md_links_every_file_it_wrote_and_every_link_exists(tmp_path):
    results = tmp_path / "results"
    for task in ("metaworld/door-open", "metaworld/hammer", "toy/reach"):
        for label in ("moto", "moto-no-bc", "sac"):
            for seed in range(2):
                good_run(results, task, label, seed, success=np.random.default_rng(seed).random(4))
    written = report(results, tmp_path / "out", warn=lambda m: None)
    report_md = (tmp_path / "out" / "s" / "report.md").read_text()
    links = set(re.findall(r"\]\(([^)]+)\)", report_md))
    assert links == {p.name for p in written if p.name != "report.md"}
    assert all((tmp_path / "out" / "s" / link).stat().st_size > 100 for link in links)
    for name in ("curves-metaworld", "curves-toy", "curves-aggregate", "aggregate-scores",
                 "performance-profile", "improvement", "ablations-moto"):
        assert {f"{name}.png", f"{name}.pdf"} <= links, name
    for name in ("final", "datasets", "ablations-moto"):
        assert {f"{name}.md", f"{name}.csv", f"{name}.tex"} <= links, name
    # The runs behind each number are named.
    assert "| metaworld/hammer | moto-no-bc | 0, 1 | `s/metaworld.hammer/moto-no-bc/seed0`<br>" \
           "`s/metaworld.hammer/moto-no-bc/seed1` |" in report_md


def test_the_final_table_bolds_the_best_and_counts_wins(tmp_path):
    results = tmp_path / "results"
    scores = {("a/one", "moto"): [0.9, 0.7], ("a/one", "sac"): [0.2, 0.4],
              ("a/two", "moto"): [0.5, 0.5], ("a/two", "sac"): [0.5, 0.5],  # a tie
              ("a/three", "moto"): [0.1, 0.3], ("a/three", "sac"): [0.6, 0.8]}
    for (task, label), finals in scores.items():
        for seed, value in enumerate(finals):
            good_run(results, task, label, seed, success=[0.0, value, value, value])
    report(results, tmp_path / "out", warn=lambda m: None)
    markdown = (tmp_path / "out" / "s" / "final.md").read_text()
    assert "| a/one | **0.80 ± 0.14** (2) | 0.30 ± 0.14 (2) |" in markdown
    assert "| a/two | 0.50 ± 0.00 (2) | 0.50 ± 0.00 (2) |" in markdown  # all tie: none is best
    assert "| a/three | 0.20 ± 0.14 (2) | **0.70 ± 0.14** (2) |" in markdown
    assert "| *mean over tasks* | *0.50* | *0.50* |" in markdown
    tex = (tmp_path / "out" / "s" / "final.tex").read_text()
    assert r"a/one & \textbf{0.80 $\pm$ 0.14} (2) & 0.30 $\pm$ 0.14 (2) \\" in tex
    report_md = (tmp_path / "out" / "s" / "report.md").read_text()
    assert "- moto: best on 1/3 tasks\n- sac: best on 1/3 tasks" in report_md


def capture_figures(monkeypatch):
    import matplotlib.pyplot as plt

    figures = {}
    original = plt.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        figures[str(path).rsplit("/", 1)[-1].split(".")[0]] = fig
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    return figures


def test_metaworld_curves_are_a_2x5_grid_with_one_colour_per_algorithm(tmp_path, monkeypatch):
    from harness.report.synthetic import paper_suite

    results = tmp_path / "results"
    paper_suite(results, tasks=10, algorithms=("moto", "sac", "bc"), seeds=2, online_steps=40_000)
    figures = capture_figures(monkeypatch)
    report(results, tmp_path / "out", reps=200, warn=lambda m: None)
    fig = figures["curves-metaworld"]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert len(panels) == 10
    rows = sorted({round(ax.get_position().y0, 2) for ax in panels})
    columns = sorted({round(ax.get_position().x0, 2) for ax in panels})
    assert len(rows) == 2 and len(columns) == 5
    assert [ax.get_title() for ax in panels] == [f"task-{i:02d}" for i in range(10)]
    assert all(ax.get_legend() is None for ax in panels) and len(fig.legends) == 1
    # One colour per algorithm across panels and figures; MOTO drawn thickest.
    colour = {}
    for name in ("curves-metaworld", "curves-aggregate", "performance-profile"):
        for ax in figures[name].axes:
            for line in ax.get_lines():
                assert colour.setdefault(line.get_label(), line.get_color()) == line.get_color()
        legend = figures[name].legends[0]
        texts = [t.get_text() for t in legend.get_texts()]
        names = [t.split(" (")[0] for t in texts]
        assert names == ["moto", "sac", "bc"], name
        if name.startswith("curves"):  # the curves say how many seeds they average
            assert all(re.fullmatch(r"\w+ \(\d+ seeds?\)", t) for t in texts), texts
        widths = {n: h.get_linewidth() for n, h in zip(names, legend.legend_handles)}
        assert widths["moto"] > widths["sac"] == widths["bc"]
    assert set(colour) == {"moto", "sac", "bc"} and len(set(colour.values())) == 3
    assert_no_overlapping_text(figures["curves-metaworld"])


def assert_no_overlapping_text(fig):
    """Titles, axis labels, tick labels and legend entries never overlap one another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving: give it a canvas again
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [text for legend in fig.legends for text in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            texts += [tick.label1 for tick in axis.get_major_ticks()
                      if low - 1e-9 <= tick.get_loc() <= high + 1e-9]  # ticks that are drawn
    texts = [t for t in texts if t.get_visible() and t.get_text()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            overlap = (min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0),
                       min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0))
            assert not (overlap[0] > 1 and overlap[1] > 1), f"{a!r} overlaps {b!r}"


def test_kitchen_curves_show_success_and_objects_side_by_side(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for task in ("kitchen/mixed", "kitchen/partial"):
        for label in ("moto", "dreamerv2"):
            for seed in range(2):
                good_run(results, task, label, seed, success=[0.0, 0.0, 0.5, 1.0],
                         objects=[0.5, 1.5, 2.5, 3.5 + seed * 0.5])
    figures = capture_figures(monkeypatch)
    report(results, tmp_path / "out", reps=200, warn=lambda m: None)
    fig = figures["curves-kitchen"]
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["mixed: success", "partial: success",
                                                  "mixed: objects", "partial: objects"]
    assert [ax.get_ylabel() for ax in panels[::2]] == ["success rate", "objects completed"]
    moto_objects = panels[2].get_lines()[0]
    assert moto_objects.get_ydata()[-1] == pytest.approx(3.75)  # mean of 3.5 and 4.0
    assert_no_overlapping_text(fig)


def test_report_of_nothing_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "none")]) == 2
    assert "no runs to report" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path), "--final-evals", "0"]) == 2
    assert "--final-evals must be in [1, 10000], got 0" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path), "--reps", str(10**9)]) == 2
    assert "--reps must be in [100, 1000000]" in capsys.readouterr().err


def test_the_overlap_check_finds_overlapping_text():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(3, 2))
    left.set_title("a long title that runs into the next panel")
    right.set_title("the next panel's title")
    with pytest.raises(AssertionError, match="overlaps"):
        assert_no_overlapping_text(fig)
    plt.close(fig)


def test_include_unfinished_draws_running_runs_up_to_the_step_they_reached(tmp_path, monkeypatch):
    results = tmp_path / "results"
    good_run(results, seed=0, success=(0.0, 0.2, 0.4, 0.6))
    running = good_run(results, seed=1, success=(0.0, 1.0, 1.0, 1.0), state="running")
    lines = (running / "metrics.csv").read_text().splitlines(keepends=True)
    (running / "metrics.csv").write_text("".join(lines[:3]))  # reached step 400 only
    figures = capture_figures(monkeypatch)
    report(results, tmp_path / "out", reps=200, include_unfinished=True, warn=lambda m: None)
    (line,) = [l for ax in figures["curves-metaworld"].axes for l in ax.get_lines()
               if l.get_label() == "bc"]
    np.testing.assert_allclose(line.get_ydata()[:2], [0.0, 0.6])   # both runs: (0.2 + 1.0) / 2
    np.testing.assert_allclose(line.get_ydata()[2:], [0.4, 0.6])   # the finished run alone
    final = pd.read_csv(tmp_path / "out" / "s" / "final.csv")
    assert final.n.tolist() == [1]                                  # never in a table
    assert "drawn in the curves up to the steps they reached" in (
        tmp_path / "out" / "s" / "report.md").read_text()


def test_offline_scores_and_kitchen_measures_get_their_own_tables(tmp_path):
    """report.md shows each run's score after the offline phase, and for Kitchen the final
    success counted the co-author's way (any target) and the objects completed."""
    results, out = tmp_path / "results", tmp_path / "out"
    for seed in (0, 1):
        write_run(results, "s", "kitchen/mixed", "moto", seed, STEPS, (0.1 * seed, 0.2, 0.4, 0.6),
                  objects=[1.0, 2.0, 3.0, 3.0 + seed], success_any=[0.5, 0.8, 1.0, 0.9 + 0.1 * seed])
    assert main(["report", "--results", str(results), "--out", str(out), "--final-evals", "2"]) == 0
    text = (out / "s" / "report.md").read_text()
    offline = text.split("## Success after the offline phase")[1].split("##")[0]
    assert "0.05 ± 0.07" in offline  # seeds 0.0 and 0.1
    any_target = text.split("## Final success counting any one target")[1].split("##")[0]
    assert "0.97 ± 0.04" in any_target  # (1.0 + 0.9) / 2 and (1.0 + 1.0) / 2
    objects = text.split("## Final objects completed")[1].split("##")[0]
    assert "3.25 ± 0.35" in objects  # (3 + 3) / 2 and (3 + 4) / 2
    csv = pd.read_csv(out / "s" / "final-any-target.csv")
    assert csv["mean"].iloc[0] == pytest.approx(0.975)


def test_metaworld_reports_have_no_kitchen_measures(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    good_run(results)
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    text = (out / "s" / "report.md").read_text()
    assert "## Success after the offline phase" in text
    assert "any one target" not in text and "objects completed" not in text.lower()


# ----------------------------------------------------------------- hostile trees (issue 24)


def _report(results, out, capsys):
    code = main(["report", "--results", str(results), "--out", str(out)])
    return code, capsys.readouterr().err


def test_cr_only_line_endings_and_a_byte_order_mark_are_read(tmp_path, capsys):
    results = tmp_path / "results"
    run = good_run(results)
    text = (run / "metrics.csv").read_text().replace("\r\n", "\n")
    (run / "metrics.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r").encode())
    loaded = load(results)
    assert not loaded.skipped, loaded.skipped
    assert list(loaded.runs[0].evaluations.eval_success) == [0.0, 0.2, 0.4, 0.6]


def test_a_fifo_in_place_of_metrics_or_config_is_skipped_not_read(tmp_path, capsys):
    import os

    results = tmp_path / "results"
    good_run(results, seed=0)
    for seed, name in ((1, "metrics.csv"), (2, "config.yaml")):
        run = good_run(results, seed=seed)
        (run / name).unlink()
        os.mkfifo(run / name)
    loaded = load(results, warn=lambda message: None)  # would block forever on a FIFO
    assert len(loaded.runs) == 1
    assert [why for _, why in loaded.skipped] == [
        "metrics.csv is not a regular file (a directory, FIFO or device); not read",
        "config.yaml is not a regular file (a directory, FIFO or device); not read"]


def test_a_cell_past_the_csv_field_limit_is_a_bad_file(tmp_path, capsys):
    results = tmp_path / "results"
    good_run(results, seed=0)
    run = good_run(results, seed=1)
    with open(run / "metrics.csv", "a") as f:
        f.write("online," + "9" * 200_000 + ",1600,4,0.5,50,10,5.0\r\n")
    loaded = load(results, warn=lambda message: None)
    assert len(loaded.runs) == 1
    assert "not CSV the harness writes" in loaded.skipped[0][1]


@pytest.mark.parametrize("field, value", [("suite", "../../ESCAPED"), ("suite", "other"),
                                          ("task", "metaworld/drawer-open"), ("seed", 1),
                                          ("label", "sac"), ("label", "a/b"), ("name", "a/b"),
                                          ("name", "..")])
def test_config_values_never_become_paths_and_must_match_the_folder(tmp_path, capsys, field, value):
    """A config.yaml whose suite, task, label or seed is not its folder's, or whose names hold
    a path separator, is skipped: nothing is written outside --out, nothing counts twice."""
    import yaml

    results, out = tmp_path / "deep" / "results", tmp_path / "deep" / "out"
    good_run(results, seed=0)
    run = good_run(results, seed=2)
    config = yaml.safe_load((run / "config.yaml").read_text())
    if field in ("label", "name"):
        config["algorithm"][field] = value
    else:
        config[field] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    code, err = _report(results, out, capsys)
    assert code == 0 and "Traceback" not in err
    assert "seed2/config.yaml" in err
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()
                     and not p.is_relative_to(results))
    assert written and all(p.parts[:2] == ("deep", "out") for p in written), written
    assert "(1)" in (out / "s" / "final.md").read_text()  # one seed counted, not two


@pytest.mark.parametrize("rows, words", [
    ([0.0, 0.2, float("inf"), 0.6], "column eval_success: inf is outside [0, 1]"),
    ([0.0, 20.0, 40.0, 60.0], "column eval_success: 20.0 is outside [0, 1]"),
    ([0.0, -5.0, 0.4, 0.6], "column eval_success: -5.0 is outside [0, 1]"),
])
def test_scores_that_are_no_success_rate_skip_the_run(tmp_path, rows, words):
    results = tmp_path / "results"
    good_run(results, seed=0)
    good_run(results, seed=1, success=rows)
    loaded = load(results, warn=lambda message: None)
    assert len(loaded.runs) == 1 and words in loaded.skipped[0][1], loaded.skipped


def _rewrite_rows(run, change):
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\r\n".join([lines[0], *change(lines[1:])]) + "\r\n")


def test_duplicate_rows_count_once_and_rows_out_of_order_are_refused(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    once = good_run(results, seed=0, success=(0.0, 0.2, 0.8, 0.6))
    twice = good_run(results, seed=1, success=(0.0, 0.2, 0.8, 0.6))
    _rewrite_rows(twice, lambda rows: rows + rows[-1:])  # the last row written twice
    unsorted = good_run(results, seed=2, success=(0.0, 0.2, 0.8, 0.6))
    _rewrite_rows(unsorted, lambda rows: [rows[0], rows[3], rows[1], rows[2]])
    negative = good_run(results, seed=3)
    _rewrite_rows(negative, lambda rows: [rows[0], rows[1].replace(",400,", ",-400,", 1), *rows[2:]])
    code, err = _report(results, out, capsys)
    assert code == 0
    assert "seed1/metrics.csv: 1 rows repeat an earlier row exactly (lines 6)" in err
    assert "seed2/metrics.csv: metrics.csv line 4: env_steps 400 comes after 1200" in err
    assert "seed3/metrics.csv: metrics.csv line 3, column env_steps: -400.0 is outside" in err
    final = pd.read_csv(out / "s" / "final.csv")
    assert final["mean"].iloc[0] == pytest.approx((0.2 + 0.8 + 0.6) / 3)  # seeds 0 and 1 alike
    assert final["n"].iloc[0] == 2
    assert once.exists()


def test_too_few_evaluations_and_subset_curves_are_said(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    for task in ("metaworld/door-open", "metaworld/drawer-open"):
        good_run(results, task=task, label="moto")
    good_run(results, task="metaworld/door-open", label="bc", success=(0.1,))  # offline only
    assert main(["report", "--results", str(results), "--out", str(out), "--final-evals", "3"]) == 0
    text = (out / "s" / "report.md").read_text()
    assert "**1 of 3 runs have fewer than 3 evaluations**" in text
    assert "`s/metaworld.door-open/bc/seed0` (1)" in text
    assert "**1 runs' final scores include their offline evaluation**" in text
    assert "Not in the aggregate curve (no finished run on some task): bc." in text


def test_symlinks_and_stray_files_in_the_tree_are_named(tmp_path, capsys):
    import os

    results, out = tmp_path / "results", tmp_path / "out"
    run = good_run(results)
    os.symlink(run, run.parent / "seed5")
    os.symlink(results / "s", results / "s" / "metaworld.door-open" / "loop")
    (run.parent / "seed9").write_text("stray")
    code, err = _report(results, out, capsys)
    text = (out / "s" / "report.md").read_text()
    section = text.split("## Ignored in the results tree")[1]
    for entry, why in (("s/metaworld.door-open/bc/seed5", "a symlink; not followed"),
                       ("s/metaworld.door-open/loop", "a symlink; not followed"),
                       ("s/metaworld.door-open/bc/seed9", "a file where a run directory should be")):
        assert f"| `{entry}` | {why} |" in section
        assert f"{entry}: {why}" in err


def test_latex_captions_escape_once_and_a_lone_label_is_not_bold(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    good_run(results, label="moto_v2#1")
    code, err = _report(results, out, capsys)
    tex = (out / "s" / "final.tex").read_text()
    assert r"\caption{Final success rate on suite s: mean $\pm$ std over seeds (n), last 3 evaluations}" in tex
    assert r"moto\_v2\#1" in tex and "textbackslash" not in tex
    assert "**" not in (out / "s" / "final.md").read_text()
    assert "RuntimeWarning" not in err


def test_each_suites_line_counts_its_own_files(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    write_run(results, "a", "metaworld/door-open", "bc", 0, STEPS, (0.0, 0.2, 0.4, 0.6))
    write_run(results, "b", "metaworld/door-open", "bc", 0, STEPS, (0.0, 0.2, 0.4, 0.6))
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("wrote")]
    counts = [int(l.split("(and ")[1].split()[0]) for l in lines]
    assert len(counts) == 2 and counts[0] == counts[1]
    assert counts[0] == sum(1 for p in (out / "a").iterdir()) - 1


def test_a_full_disk_under_out_is_a_message_not_a_traceback(tmp_path, capsys):
    from tests.helpers import tmpfs

    results = tmp_path / "r"
    good_run(results)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        code, err = _report(results, disk / "out", capsys)  # 64 KB: the figures do not fit
        assert code == 2 and "Traceback" not in err
        assert "cannot write the report under" in err and "No space left on device" in err


def test_ablation_bars_keep_long_task_names_apart(tmp_path, monkeypatch):
    names = ("button-press-topdown", "door-open", "drawer-open", "hammer", "plate-slide",
             "window-open", "bin-picking", "box-close", "coffee-push", "disassemble")
    results = tmp_path / "results"
    for task in names:
        for label in ("moto", "moto-no-bc"):
            write_run(results, "s", f"metaworld/{task}", label, 0, STEPS, (0.0, 0.2, 0.4, 0.6),
                      name="moto")
    figures = capture_figures(monkeypatch)
    report(results, tmp_path / "out", reps=100, warn=lambda m: None)
    assert_no_overlapping_text(figures["ablations-moto"])


def test_the_performance_profile_steps_down_at_the_observed_scores(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for seed, last in enumerate((0.3, 0.7)):
        good_run(results, seed=seed, success=(0.0, last, last, last))
    figures = capture_figures(monkeypatch)
    report(results, tmp_path / "out", reps=100, warn=lambda m: None)
    (line,) = figures["performance-profile"].axes[0].get_lines()
    assert line.get_drawstyle() == "steps-post"
    xs, ys = line.get_xdata(), line.get_ydata()
    assert np.allclose(xs, [0.0, 0.3, 0.7, 1.0])  # the observed final scores, and the ends
    assert np.allclose(ys, [1.0, 0.5, 0.0, 0.0])  # the fraction of runs scoring above each


def test_pytorch_twins_are_compared_with_their_originals(tmp_path):
    """bc-torch scores what bc scores on every seed and task: P(twin > original) is 0.5;
    sac-torch always below sac: 0."""
    results = tmp_path / "results"
    for task in ("metaworld/door-open", "metaworld/drawer-open"):
        for seed in range(3):
            final = (0.0, 0.2, 0.4, 0.2 * seed)
            for label, success in (("bc", final), ("bc-torch", final),
                                   ("sac", (0.0, 0.5, 0.7, 0.9)), ("sac-torch", (0.0, 0.1, 0.1, 0.1))):
                good_run(results, task=task, label=label, seed=seed, success=success, name=label)
    report(results, tmp_path / "out", reps=200)
    text = (tmp_path / "out" / "s" / "report.md").read_text()
    assert "| bc-torch | bc | 0.50 [" in text
    assert "| sac-torch | sac | 0.00 [0.00, 0.00] |" in text
    twins = pd.read_csv(tmp_path / "out" / "s" / "twins.csv")
    assert list(twins["algorithm"]) == ["bc-torch", "sac-torch"]
