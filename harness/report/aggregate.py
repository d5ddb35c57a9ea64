"""The numbers of the report: final scores, curves on a common step grid, bootstrap intervals,
and the aggregate statistics of Agarwal et al. (2021, "Deep RL at the edge of the statistical
precipice"): IQM, mean, probability of improvement, performance profiles.

Definitions (docs/report.md states them for users):

- A run's **final score** is the mean success rate of its last `FINAL_EVALS` evaluations
  (each over the protocol's `eval_episodes` episodes); its **offline score** is its evaluation
  at the end of the offline phase.
- **Curves**: each run is interpolated linearly onto the task's step grid, only within the
  steps it has reached (never extrapolated); at each grid step, the mean over the runs there
  and a 95% percentile-bootstrap interval, resampling those runs.
- **Aggregates** over tasks are computed from per-task arrays of final scores, so an algorithm
  may have a different number of seeds on different tasks. Point estimates come from rliable's
  `metrics` (IQM pools every run of every task; the mean is the mean of per-task means;
  probability of improvement is the per-task Mann-Whitney probability, averaged over tasks).
  Intervals come from a stratified bootstrap (runs resampled within each task, tasks kept), as
  rliable's `StratifiedBootstrap` does, written here vectorized over replications: rliable's
  own took 5.4 s for IQM and mean of 8 algorithms at 2,000 replications and 11.9 s for one
  performance profile on this 2-core machine, against a budget of 10 s for a whole report
  (docs/decisions.md). `tests/test_report_stats.py` checks both against rliable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FINAL_EVALS = 3          # evaluations averaged into a run's final score
REPS = 2000              # bootstrap replications
CONFIDENCE = 0.95
MAX_GRID_POINTS = 200    # a curve's step grid is thinned to at most this many points
SEED = 0                 # the bootstrap's RNG seed: the same results give the same report
PROFILE_TAUS = np.linspace(0.0, 1.0, 51)


def final_scores(evaluations: pd.DataFrame, last: int = FINAL_EVALS) -> pd.DataFrame:
    """One row per run: `final` (mean of its last `last` evaluations), `offline` (its last
    offline evaluation), `evals` (how many evaluations the final score averages, `online_evals`
    of them online: fewer when a run has fewer than `last` online evaluations), and, when
    the task logs them (Kitchen), `final_objects` and `final_any` (the same mean of
    `eval_objects` and of `eval_success_any`)."""
    rows = []
    has_objects = "eval_objects" in evaluations
    has_any = "eval_success_any" in evaluations
    for (suite, task, algorithm, seed, run), group in evaluations.groupby(
            ["suite", "task", "algorithm", "seed", "run"], sort=True):
        tail = group.tail(last)
        offline = group[group.phase == "offline"].eval_success
        row = {"suite": suite, "task": task, "algorithm": algorithm, "seed": seed, "run": run,
               "final": float(tail.eval_success.mean()), "evals": len(tail),
               "online_evals": int((tail.phase == "online").sum()),
               "offline": float(offline.iloc[-1]) if len(offline) else np.nan}
        if has_objects:
            row["final_objects"] = float(tail.eval_objects.mean())
        if has_any:
            row["final_any"] = float(tail.eval_success_any.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def per_task(final: pd.DataFrame, column: str = "final") -> pd.DataFrame:
    """Mean, sample standard deviation (ddof 1; NaN for one seed) and seed count per task and
    algorithm, with the seeds and runs behind each number."""
    grouped = final.groupby(["task", "algorithm"], sort=True)
    table = grouped[column].agg(mean="mean", std="std", n="count").reset_index()
    table["seeds"] = grouped.seed.apply(lambda s: sorted(s.tolist())).values
    table["runs"] = grouped.run.apply(list).values
    return table


# ---------------------------------------------------------------------------- curves


@dataclass
class Curve:
    steps: np.ndarray        # (G,) grid of online env steps
    mean: np.ndarray         # (G,) mean over the runs that reached each step (NaN where none)
    low: np.ndarray          # (G,) bootstrap interval (equal to the mean where one run)
    high: np.ndarray
    runs: np.ndarray         # (G,) how many runs each point averages
    samples: np.ndarray      # (REPS, G) bootstrap replications of the mean


def run_points(group: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's (env_steps, value) pairs in increasing steps; of rows at the same step (the
    offline evaluation and a later one at step 0), the last written counts."""
    steps, values = group.env_steps.to_numpy(float), group[metric].to_numpy(float)
    keep = ~(np.isnan(steps) | np.isnan(values))
    steps, values = steps[keep][::-1], values[keep][::-1]
    _, last = np.unique(steps, return_index=True)   # first in reverse = last written; sorted
    return steps[last], values[last]


def step_grid(step_arrays: list[np.ndarray], max_points: int = MAX_GRID_POINTS) -> np.ndarray:
    """The union of the runs' evaluation steps, or an even grid over it if that is too dense."""
    steps = np.unique(np.concatenate(step_arrays)) if step_arrays else np.zeros(0)
    if len(steps) > max_points:
        steps = np.linspace(steps[0], steps[-1], max_points)
    return steps


def interpolate(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """`values` at `grid` by linear interpolation; NaN outside [steps[0], steps[-1]]."""
    out = np.full(len(grid), np.nan)
    if len(steps):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        out[inside] = np.interp(grid[inside], steps, values)
    return out


def bootstrap_mean(matrix: np.ndarray, reps: int, rng: np.random.Generator,
                   confidence: float = CONFIDENCE) -> Curve:
    """Mean over rows (runs) of a (runs × G) matrix with NaN where a run has no value, and a
    percentile-bootstrap interval at each column that resamples the runs present there.

    Columns with the same set of runs present are resampled together, so a column with n runs
    is always bootstrapped over exactly those n.
    """
    width = matrix.shape[1]
    present = ~np.isnan(matrix)
    mean, low, high = (np.full(width, np.nan) for _ in range(3))
    samples = np.full((reps, width), np.nan)
    patterns = {}
    for column in range(width):
        patterns.setdefault(present[:, column].tobytes(), []).append(column)
    alpha = (1 - confidence) / 2
    for key, columns in patterns.items():
        rows = np.flatnonzero(np.frombuffer(key, dtype=bool))
        if not len(rows):
            continue
        block = matrix[np.ix_(rows, columns)]                      # (n, c)
        mean[columns] = block.mean(axis=0)
        # Each replication's mean is (how often it drew each run / n) @ block.
        samples[:, columns] = draw_counts(len(rows), reps, rng) @ block / len(rows)
        low[columns], high[columns] = np.quantile(samples[:, columns], [alpha, 1 - alpha], axis=0)
    return Curve(np.zeros(width), mean, low, high, present.sum(axis=0), samples)


def draw_counts(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n): how many times each of n items is drawn in each of `reps` resamples of n
    items with replacement."""
    draws = rng.integers(0, n, size=(reps, n)) + n * np.arange(reps)[:, None]
    return np.bincount(draws.ravel(), minlength=reps * n).reshape(reps, n).astype(float)


def task_curves(evaluations: pd.DataFrame, metric: str = "eval_success", reps: int = REPS,
                seed: int = SEED) -> dict[tuple[str, str], Curve]:
    """{(task, algorithm): Curve} for `metric`, each task on its own step grid."""
    rng = np.random.default_rng(seed)
    curves = {}
    for task, rows in evaluations.groupby("task", sort=True):
        points = {key: run_points(run, metric) for key, run in rows.groupby(["algorithm", "run"])}
        grid = step_grid([steps for steps, _ in points.values()])
        for algorithm in sorted(rows.algorithm.unique()):
            matrix = np.array([interpolate(*p, grid) for (a, _), p in points.items() if a == algorithm])
            curve = bootstrap_mean(matrix, reps, rng)
            curve.steps = grid
            curves[task, algorithm] = curve
    return curves


def aggregate_curves(evaluations: pd.DataFrame, reps: int = REPS, seed: int = SEED,
                     points: int = 100) -> dict[str, Curve]:
    """{algorithm: Curve} of the mean success over tasks, on an even grid up to the last step
    every task of the algorithm has reached with at least one run. The interval resamples runs
    within each task (a stratified bootstrap) and averages the replications over tasks."""
    rng = np.random.default_rng(seed)
    curves = {}
    for algorithm, rows in evaluations.groupby("algorithm", sort=True):
        per_task = {task: [run_points(run, "eval_success") for _, run in task_rows.groupby("run")]
                    for task, task_rows in rows.groupby("task")}
        end = min(max(steps[-1] for steps, _ in runs if len(steps)) for runs in per_task.values())
        start = max(min(steps[0] for steps, _ in runs if len(steps)) for runs in per_task.values())
        grid = np.linspace(start, end, points) if end > start else np.array([start])
        task_curves_ = [bootstrap_mean(np.array([interpolate(s, v, grid) for s, v in runs]), reps, rng)
                        for runs in per_task.values()]
        mean = np.mean([c.mean for c in task_curves_], axis=0)
        samples = np.mean([c.samples for c in task_curves_], axis=0)
        alpha = (1 - CONFIDENCE) / 2
        low, high = np.quantile(samples, [alpha, 1 - alpha], axis=0)
        runs = np.min([c.runs for c in task_curves_], axis=0)
        curves[algorithm] = Curve(grid, mean, low, high, runs, samples)
    return curves


# ---------------------------------------------------------------------- aggregates


def score_arrays(final: pd.DataFrame, tasks: list[str]) -> dict[str, list[np.ndarray]]:
    """{algorithm: [final scores of its runs on each of `tasks`]} for the algorithms that have
    at least one finished run on every one of `tasks` (the others cannot be aggregated)."""
    out = {}
    for algorithm, rows in final.groupby("algorithm", sort=True):
        arrays = [rows[rows.task == t].final.to_numpy(float) for t in tasks]
        if all(len(a) for a in arrays):
            out[algorithm] = arrays
    return out


def _resample(arrays: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Stratified bootstrap: each task's runs resampled with replacement, tasks kept."""
    return [a[rng.integers(0, len(a), size=(reps, len(a)))] for a in arrays]


def _iqm(samples: list[np.ndarray]) -> np.ndarray:
    """Interquartile mean of all runs of all tasks, per replication: (reps,)."""
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(samples, axis=1), 0.25, axis=1)


def _mean(samples: list[np.ndarray]) -> np.ndarray:
    """Mean over tasks of the mean over runs, per replication: (reps,)."""
    return np.mean([s.mean(axis=1) for s in samples], axis=0)


def _profile(samples: list[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs scoring above each tau, per replication: (reps, taus)."""
    pooled = np.concatenate(samples, axis=1)
    return (pooled[:, :, None] > taus[None, None, :]).mean(axis=1)


def _improvement(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks, per replication: (reps,)."""
    per_task = [((a[:, :, None] > b[:, None, :]) + 0.5 * (a[:, :, None] == b[:, None, :]))
                .mean(axis=(1, 2)) for a, b in zip(x, y)]
    return np.mean(per_task, axis=0)


def _interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple:
    alpha = (1 - confidence) / 2
    return tuple(np.quantile(samples, [alpha, 1 - alpha], axis=0))


def aggregates(scores: dict[str, list[np.ndarray]], reps: int = REPS, seed: int = SEED
               ) -> pd.DataFrame:
    """IQM and mean with 95% stratified-bootstrap intervals, per algorithm."""
    from rliable import metrics

    rng = np.random.default_rng(seed)
    rows = []
    for algorithm, arrays in scores.items():
        samples = _resample(arrays, reps, rng)
        iqm_low, iqm_high = _interval(_iqm(samples))
        mean_low, mean_high = _interval(_mean(samples))
        rows.append({"algorithm": algorithm,
                     "iqm": float(metrics.aggregate_iqm(np.concatenate(arrays))),
                     "iqm_low": iqm_low, "iqm_high": iqm_high,
                     "mean": float(np.mean([metrics.aggregate_mean(a[:, None]) for a in arrays])),
                     "mean_low": mean_low, "mean_high": mean_high,
                     "runs": int(sum(len(a) for a in arrays)), "tasks": len(arrays)})
    return pd.DataFrame(rows)


def improvement(scores: dict[str, list[np.ndarray]], over: str, reps: int = REPS,
                seed: int = SEED) -> pd.DataFrame:
    """Probability that a run of `over` beats a run of each other algorithm on a task drawn at
    random, with a 95% bootstrap interval (each algorithm's runs resampled independently
    within each task, as rliable's StratifiedIndependentBootstrap does)."""
    from rliable import metrics

    rng = np.random.default_rng(seed)
    rows = []
    for other, arrays in scores.items():
        if other == over:
            continue
        x, y = scores[over], arrays
        point = np.mean([metrics.probability_of_improvement(a[:, None], b[:, None])
                         for a, b in zip(x, y)])
        low, high = _interval(_improvement(_resample(x, reps, rng), _resample(y, reps, rng)))
        rows.append({"algorithm": over, "baseline": other, "probability": float(point),
                     "low": low, "high": high})
    return pd.DataFrame(rows)


def profile_taus(scores: dict[str, list[np.ndarray]]) -> np.ndarray:
    """0, 1 and every observed score: where the run-score profile can change. The fraction of
    runs scoring above tau is constant from one observed score to the next, so a step plot on
    these points is the exact profile (a fixed grid slants its drops)."""
    observed = [np.asarray(a, float).ravel() for arrays in scores.values() for a in arrays]
    return np.unique(np.clip(np.concatenate([[0.0, 1.0], *observed]), 0.0, 1.0))


def profiles(scores: dict[str, list[np.ndarray]], taus: np.ndarray = PROFILE_TAUS,
             reps: int = REPS, seed: int = SEED) -> dict[str, tuple[np.ndarray, ...]]:
    """{algorithm: (fraction of runs scoring above each tau, low, high)}: the run-score
    performance profile with a 95% stratified-bootstrap band."""
    rng = np.random.default_rng(seed)
    out = {}
    for algorithm, arrays in scores.items():
        point = _profile([a[None, :] for a in arrays], taus)[0]
        out[algorithm] = (point, *_interval(_profile(_resample(arrays, reps, rng), taus)))
    return out


def bootstrap_task_means(final: pd.DataFrame, reps: int = REPS, seed: int = SEED) -> pd.DataFrame:
    """Per task and algorithm: the mean final score and its 95% bootstrap interval over seeds
    (for the ablation bars)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (task, algorithm), group in final.groupby(["task", "algorithm"], sort=True):
        values = group.final.to_numpy(float)
        draws = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
        low, high = _interval(draws)
        rows.append({"task": task, "algorithm": algorithm, "mean": values.mean(),
                     "low": low, "high": high, "n": len(values)})
    return pd.DataFrame(rows)
