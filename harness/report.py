"""`python -m harness report`: tables and curves from the runs' metrics.csv files.

Only finished runs count. For each suite under the results dir it writes, into `<out>/<suite>/`:
- `summary.csv`: per task and algorithm, the success rate after the offline phase and at the
  last evaluation, mean and standard deviation over seeds, and the number of seeds;
- `curves.png`: evaluation success against online simulator steps, one panel per task,
  mean over seeds with a band of one standard deviation.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from harness.errors import UserError
from harness.results import iter_run_dirs, read_status


def load_runs(results_dir: Path, suite: str | None = None) -> pd.DataFrame:
    """metrics.csv rows of every finished run (failed and running ones are left out, and named)."""
    frames, unfinished = [], []
    for run_dir in iter_run_dirs(Path(results_dir)):
        metrics = run_dir / "metrics.csv"
        if not metrics.exists():
            continue
        config_path = run_dir / "config.yaml"
        if not config_path.exists():
            continue
        config = yaml.safe_load(config_path.read_text())
        if suite and config["suite"] != suite:
            continue
        if (read_status(run_dir) or {}).get("state") != "finished":
            unfinished.append(str(run_dir.relative_to(results_dir)))
            continue
        df = pd.read_csv(metrics)
        if df.empty:
            continue
        df["suite"], df["task"] = config["suite"], config["task"]
        df["algorithm"], df["seed"] = config["algorithm"]["label"], config["seed"]
        frames.append(df)
    if unfinished:
        print(f"left out {len(unfinished)} unfinished or failed runs: {', '.join(unfinished)}")
    if not frames:
        where = f"suite '{suite}' in " if suite else ""
        raise UserError(f"no runs with metrics found for {where}{results_dir}. Run a suite first "
                        "(python -m harness run suites/smoke.yaml) or pass --results.")
    return pd.concat(frames, ignore_index=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    keys = ["suite", "task", "algorithm", "seed"]
    offline = runs[runs.phase == "offline"].groupby(keys).eval_success.last().rename("offline_success")
    final = runs.sort_values("env_steps").groupby(keys).eval_success.last().rename("final_success")
    per_seed = pd.concat([offline, final], axis=1).reset_index()
    table = per_seed.groupby(["suite", "task", "algorithm"]).agg(
        offline_success_mean=("offline_success", "mean"), offline_success_std=("offline_success", "std"),
        final_success_mean=("final_success", "mean"), final_success_std=("final_success", "std"),
        seeds=("seed", "nunique"))
    return table.reset_index()


def plot_curves(runs: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(runs.task.unique())
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    # One colour per algorithm in every panel, and one legend beside the panels, so the
    # legend never covers a curve however many algorithms a suite has.
    algorithms = sorted(runs.algorithm.unique())
    palette = plt.get_cmap("tab10" if len(algorithms) <= 10 else "tab20")
    colours = {name: palette(i % palette.N) for i, name in enumerate(algorithms)}
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    handles = {}
    for ax, task in zip(axes.flat, tasks):
        for algorithm, group in runs[runs.task == task].groupby("algorithm"):
            curve = group.groupby("env_steps").eval_success.agg(["mean", "std"]).fillna(0.0)
            (handles[algorithm],) = ax.plot(curve.index, curve["mean"], marker="o", markersize=3,
                                            color=colours[algorithm])
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=colours[algorithm], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("online simulator steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.05, 1.05)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    names = [name for name in algorithms if name in handles]
    fig.legend([handles[name] for name in names], names, loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def report(results_dir: Path, out_dir: Path, suite: str | None = None) -> list[Path]:
    runs = load_runs(results_dir, suite)
    written = []
    for suite_name, group in runs.groupby("suite"):
        target = Path(out_dir) / suite_name
        target.mkdir(parents=True, exist_ok=True)
        table = summarize(group)
        table.to_csv(target / "summary.csv", index=False)
        plot_curves(group, target / "curves.png")
        written += [target / "summary.csv", target / "curves.png"]
        print(f"suite {suite_name}:")
        print(table.drop(columns="suite").to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return written
