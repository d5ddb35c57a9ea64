"""The report's statistics, each computed a second way here: by hand, with plain NumPy, or
with rliable's own bootstrap."""

import numpy as np
import pandas as pd
import pytest

from harness.report import aggregate as agg


def evaluations(runs: dict) -> pd.DataFrame:
    """{(task, algorithm, seed): (steps, success)} -> rows like the loader's."""
    rows = []
    for (task, algorithm, seed), (steps, success) in runs.items():
        for i, (step, value) in enumerate(zip(steps, success)):
            rows.append({"suite": "s", "task": task, "algorithm": algorithm, "seed": seed,
                         "run": f"{task}/{algorithm}/{seed}", "phase": "offline" if i == 0 else "online",
                         "grad_steps": i, "env_steps": step, "eval_success": value})
    return pd.DataFrame(rows)


def independent_bootstrap(values: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [rng.choice(values, len(values)).mean() for _ in range(reps)]
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_curves_interpolate_within_each_run_and_never_extrapolate():
    runs = {("t", "a", 0): ([0, 100, 200, 300], [0.0, 0.2, 0.4, 0.6]),
            ("t", "a", 1): ([0, 150, 300], [0.2, 0.5, 1.0]),
            ("t", "a", 2): ([0, 100], [0.1, 0.3])}            # stopped early (unequal length)
    curve = agg.task_curves(evaluations(runs), reps=4000)["t", "a"]
    np.testing.assert_array_equal(curve.steps, [0, 100, 150, 200, 300])
    at = {s: [np.interp(s, steps, values) for steps, values in runs.values() if s <= steps[-1]]
          for s in curve.steps}
    np.testing.assert_allclose(curve.mean, [np.mean(at[s]) for s in curve.steps])
    np.testing.assert_array_equal(curve.runs, [3, 3, 2, 2, 2])  # run 2 ends at 100
    for i, step in enumerate(curve.steps):
        low, high = independent_bootstrap(np.array(at[step]), 4000, seed=i + 100)
        assert curve.low[i] == pytest.approx(low, abs=0.02)
        assert curve.high[i] == pytest.approx(high, abs=0.02)


def test_one_run_gives_a_band_of_zero_width_and_missing_steps_stay_missing():
    runs = {("t", "a", 0): ([0, 100], [0.5, 0.7]), ("t", "b", 0): ([0, 100, 200], [0.0, 0.1, 0.2])}
    curves = agg.task_curves(evaluations(runs), reps=200)
    a = curves["t", "a"]
    np.testing.assert_array_equal(a.steps, [0, 100, 200])
    np.testing.assert_allclose(a.mean[:2], [0.5, 0.7])
    assert np.isnan(a.mean[2]) and a.runs[2] == 0          # a never reached 200
    np.testing.assert_allclose(a.low[:2], a.mean[:2])
    np.testing.assert_allclose(a.high[:2], a.mean[:2])


def test_the_offline_evaluation_and_a_later_one_at_the_same_step_count_once():
    frame = evaluations({("t", "a", 0): ([0, 0, 100], [0.3, 0.5, 0.9])})
    steps, values = agg.run_points(frame, "eval_success")
    np.testing.assert_array_equal(steps, [0, 100])
    np.testing.assert_array_equal(values, [0.5, 0.9])


def test_final_scores_average_the_last_evaluations():
    frame = evaluations({("t", "a", 0): ([0, 100, 200, 300, 400], [0.1, 0.2, 0.3, 0.4, 0.8])})
    final = agg.final_scores(frame, last=3)
    assert final.final.iloc[0] == pytest.approx(0.5) and final.evals.iloc[0] == 3
    assert final.offline.iloc[0] == pytest.approx(0.1)
    assert agg.final_scores(frame, last=10).final.iloc[0] == pytest.approx(0.36)


def test_aggregate_curve_averages_tasks_up_to_the_step_all_reached():
    runs = {("t1", "a", 0): ([0, 100], [0.0, 1.0]), ("t2", "a", 0): ([0, 200], [0.0, 0.0])}
    curve = agg.aggregate_curves(evaluations(runs), reps=200, points=3)["a"]
    np.testing.assert_allclose(curve.steps, [0, 50, 100])   # t1 stops at 100
    np.testing.assert_allclose(curve.mean, [0.0, 0.25, 0.5])


RECTANGULAR = {  # 4 seeds × 3 tasks per algorithm
    "moto": np.array([[0.9, 0.8, 0.7, 1.0], [0.5, 0.6, 0.4, 0.9], [0.2, 0.1, 0.3, 0.0]]),
    "sac": np.array([[0.6, 0.8, 0.5, 0.7], [0.5, 0.5, 0.1, 0.2], [0.0, 0.0, 0.1, 0.0]]),
    "bc": np.array([[0.4, 0.4, 0.4, 0.4], [0.3, 0.2, 0.3, 0.2], [0.1, 0.2, 0.0, 0.0]]),
}


def test_point_estimates_match_hand_computations_and_rliable():
    from rliable import metrics

    scores = {a: list(m) for a, m in RECTANGULAR.items()}
    table = agg.aggregates(scores, reps=200).set_index("algorithm")
    for algorithm, matrix in RECTANGULAR.items():
        pooled = np.sort(matrix.ravel())               # 12 scores: the middle 6 are the IQM's
        assert table.loc[algorithm, "iqm"] == pytest.approx(pooled[3:9].mean())
        assert table.loc[algorithm, "mean"] == pytest.approx(matrix.mean())
        # rliable wants (runs × tasks).
        assert table.loc[algorithm, "iqm"] == pytest.approx(metrics.aggregate_iqm(matrix.T))
        assert table.loc[algorithm, "mean"] == pytest.approx(metrics.aggregate_mean(matrix.T))
    poi = agg.improvement(scores, "moto", reps=200).set_index("baseline")
    for baseline in ("sac", "bc"):
        x, y = RECTANGULAR["moto"], RECTANGULAR[baseline]
        by_hand = np.mean([np.mean([(a > b) + 0.5 * (a == b) for a in x[t] for b in y[t]])
                           for t in range(3)])
        assert poi.loc[baseline, "probability"] == pytest.approx(by_hand)
        assert poi.loc[baseline, "probability"] == pytest.approx(
            metrics.probability_of_improvement(x.T, y.T))
    point, low, high = agg.profiles(scores, np.array([0.0, 0.45, 0.95]), reps=200)["bc"]
    np.testing.assert_allclose(point, [10 / 12, 0.0, 0.0])  # two zeros are not > 0


def test_bootstrap_intervals_agree_with_rliable():
    from rliable import library, metrics

    scores = {a: list(m) for a, m in RECTANGULAR.items()}
    ours = agg.aggregates(scores, reps=5000).set_index("algorithm")
    np.random.seed(0)  # rliable's StratifiedBootstrap draws from NumPy's global RNG
    _, theirs = library.get_interval_estimates(
        {a: m.T for a, m in RECTANGULAR.items()},
        lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]), reps=5000)
    for algorithm in RECTANGULAR:
        (iqm_low, mean_low), (iqm_high, mean_high) = theirs[algorithm]
        assert ours.loc[algorithm, "iqm_low"] == pytest.approx(iqm_low, abs=0.03)
        assert ours.loc[algorithm, "iqm_high"] == pytest.approx(iqm_high, abs=0.03)
        assert ours.loc[algorithm, "mean_low"] == pytest.approx(mean_low, abs=0.02)
        assert ours.loc[algorithm, "mean_high"] == pytest.approx(mean_high, abs=0.02)
    poi = agg.improvement(scores, "moto", reps=5000).set_index("baseline")
    np.random.seed(0)
    _, theirs = library.get_interval_estimates(
        {"sac": (RECTANGULAR["moto"].T, RECTANGULAR["sac"].T)},
        lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=2000)
    assert poi.loc["sac", "low"] == pytest.approx(theirs["sac"][0][0], abs=0.03)
    assert poi.loc["sac", "high"] == pytest.approx(theirs["sac"][1][0], abs=0.03)


def test_missing_seeds_weight_tasks_equally_in_the_mean_and_pool_runs_in_the_iqm():
    scores = {"a": [np.array([1.0, 1.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.2, 0.4])]}
    row = agg.aggregates(scores, reps=200).iloc[0]
    assert row["mean"] == pytest.approx((0.8 + 0.2) / 2)
    pooled = np.sort(np.concatenate(scores["a"]))     # 8 runs: the middle 4
    assert row["iqm"] == pytest.approx(pooled[2:6].mean())
    assert row["runs"] == 8 and row["tasks"] == 2
    assert row["mean_low"] <= row["mean"] <= row["mean_high"]


def test_score_arrays_leave_out_algorithms_missing_a_task():
    final = pd.DataFrame({"task": ["t1", "t2", "t1"], "algorithm": ["a", "a", "b"],
                          "final": [0.1, 0.2, 0.3]})
    assert list(agg.score_arrays(final, ["t1", "t2"])) == ["a"]
