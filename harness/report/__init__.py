"""`python -m harness report`: what goes into a paper, from the results tree.

load (every run, robust to bad files) -> aggregate (final scores, curves, bootstrap intervals,
rliable statistics) -> plots and tables -> `<out>/<suite>/report.md`, which links every figure
and table and names the runs behind each number, the unfinished ones and the skipped ones.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.report import aggregate as agg
from harness.report import plots, tables
from harness.report.load import Loaded, Run, load

__all__ = ["report", "load"]


def report(results: Path, out: Path, suite: str | None = None,
           final_evals: int = agg.FINAL_EVALS, reps: int = agg.REPS,
           include_unfinished: bool = False, warn=None) -> list[Path]:
    """Write the report of every suite under `results` (or of `suite`) into `out/<suite>/`."""
    if not 1 <= final_evals <= 10_000:
        raise UserError(f"--final-evals must be in [1, 10000], got {final_evals}.")
    if not 100 <= reps <= 1_000_000:
        raise UserError(f"--reps must be in [100, 1000000] (fewer make a 95% interval "
                        f"meaningless, more only take time), got {reps}.")
    loaded = load(Path(results), suite, warn)
    suites = sorted({r.suite for r in loaded.runs} | {p.split("/", 1)[0] for p in
                    [*loaded.not_started, *(path for path, _ in loaded.skipped)]})
    if not suites:
        where = f"suite '{suite}' in " if suite else ""
        ignored = (f" ({len(loaded.ignored)} symlinks or stray files were passed over, named "
                   "above)" if loaded.ignored else "")
        raise UserError(f"no runs to report in {where}{results}{ignored}. Run a suite first "
                        "(python -m harness run suites/smoke.yaml) or pass --results.")
    written = []
    for name in suites:
        runs = [r for r in loaded.runs if r.suite == name]
        part = Loaded(runs=runs, warnings=loaded.warnings,
                      skipped=[s for s in loaded.skipped if s[0].split("/", 1)[0] == name],
                      not_started=[p for p in loaded.not_started if p.split("/", 1)[0] == name],
                      ignored=[i for i in loaded.ignored if i[0].split("/", 1)[0] == name])
        # NaN standard deviations of one seed, means of empty bootstrap slices: the tables
        # show them as "–", so NumPy's RuntimeWarnings about them are noise on stderr.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            written += SuiteReport(name, part, Path(out) / name, final_evals, reps,
                                   include_unfinished).write()
    return written


class SuiteReport:
    def __init__(self, suite: str, loaded: Loaded, out: Path, final_evals: int, reps: int,
                 include_unfinished: bool):
        self.suite, self.loaded, self.out = suite, loaded, out
        self.final_evals, self.reps, self.include_unfinished = final_evals, reps, include_unfinished
        self.colour = plots.colours({r.algorithm for r in loaded.runs})
        self.sections: list[str] = []
        self.written: list[Path] = []

    def write(self) -> list[Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        finished = self.loaded.finished()
        evaluations = self.loaded.evaluations(finished)
        if finished:
            final = agg.final_scores(evaluations, self.final_evals)
            table = agg.per_task(final)
            self._final_table(table)
            self.sections += self._short_finals(final)
            self._other_measures(final)
            self._curves(finished, evaluations)
            self._aggregates(final, sorted(table.task.unique()))
            self._ablations(final)
            self._datasets(finished)
            self._runs_behind(table)
        else:
            self.sections.append("No run of this suite has finished yet: nothing to aggregate.\n")
        self._unfinished_and_skipped()
        report_md = self.out / "report.md"
        report_md.write_text(self._header(finished) + "\n".join(self.sections))
        return [report_md, *self.written]

    # --------------------------------------------------------------------------- parts

    def _header(self, finished: list[Run]) -> str:
        n_unfinished = len(self.loaded.unfinished()) + len(self.loaded.not_started)
        n_skipped = len(self.loaded.skipped)
        lines = [f"# Report: suite `{self.suite}`", "",
                 f"{len(finished)} finished runs reported; {n_unfinished} unfinished "
                 f"(not in any table{'; in the curves' if self.include_unfinished else ''}); "
                 f"{n_skipped} skipped for bad files. Details at the end.", "",
                 f"A run's **final score** is its mean evaluation success over its last "
                 f"{self.final_evals} evaluations (`--final-evals`). Intervals are 95% "
                 f"percentile bootstraps over seeds ({self.reps} replications, fixed RNG seed "
                 f"{agg.SEED}); see docs/report.md for every definition.", ""]
        return "\n".join(lines) + "\n"

    def _final_table(self, table: pd.DataFrame) -> None:
        markdown, paths = tables.score_table(
            table, self.out / "final", f"Final success rate on suite {self.suite}: mean ± "
            f"std over seeds (n), last {self.final_evals} evaluations")
        self.written += paths
        self.sections += ["## Final performance", "",
                          "Mean ± standard deviation over seeds (seed count); best per task in "
                          "bold. " + _links(paths), "", markdown,
                          *[f"- {line}" for line in tables.best_counts(table)], ""]

    def _short_finals(self, final: pd.DataFrame) -> list[str]:
        """Lines naming the runs whose final score is not what the header says: fewer
        evaluations than --final-evals, or the offline evaluation among them."""
        lines = []
        short = final[final.evals < self.final_evals]
        if len(short):
            lines.append(f"**{len(short)} of {len(final)} runs have fewer than {self.final_evals} "
                         "evaluations**; their final score averages all they have: " + ", ".join(
                             f"`{r.run}` ({r.evals})" for r in short.head(10).itertuples())
                         + (" ..." if len(short) > 10 else "") + ".")
        with_offline = final[final.online_evals < final.evals]
        if len(with_offline):
            lines.append(f"**{len(with_offline)} runs' final scores include their offline "
                         "evaluation** (they have fewer online evaluations than that): "
                         + ", ".join(f"`{r.run}`" for r in with_offline.head(10).itertuples())
                         + (" ..." if len(with_offline) > 10 else "") + ".")
        return [*lines, ""] if lines else []

    def _other_measures(self, final: pd.DataFrame) -> None:
        """Success after the offline phase, and Kitchen's other two measures, as tables."""
        measures = [("offline", "offline", "Success after the offline phase",
                     "each run's last offline evaluation, before any online episode")]
        if "final_any" in final:
            measures.append(("final_any", "final-any-target",
                             "Final success counting any one target (the co-author's definition)",
                             "an episode with a return above 0, as khatch31/jaxrl2's evaluation "
                             "counts success; the final table above needs all targets at once"))
        if "final_objects" in final:
            measures.append(("final_objects", "final-objects", "Final objects completed",
                             "the most targets done at once in an episode, averaged"))
        for column, stem, title, meaning in measures:
            rows = final.dropna(subset=[column])
            if rows.empty:
                continue
            markdown, paths = tables.score_table(
                agg.per_task(rows, column), self.out / stem,
                f"{title} on suite {self.suite}: mean ± std over seeds (n)")
            self.written += paths
            self.sections += [f"## {title}", "", f"Per run: {meaning}. Mean ± standard deviation "
                              "over seeds (seed count). " + _links(paths), "", markdown]

    def _curves(self, finished: list[Run], evaluations: pd.DataFrame) -> None:
        if self.include_unfinished:
            evaluations = self.loaded.evaluations(finished + self.loaded.unfinished())
        success = agg.task_curves(evaluations, "eval_success", self.reps)
        objects = {}
        if "eval_objects" in evaluations and evaluations.eval_objects.notna().any():
            objects = agg.task_curves(evaluations[evaluations.eval_objects.notna()],
                                      "eval_objects", self.reps)
        lines = ["## Learning curves", "",
                 "Evaluation success against online env steps (action repeat counted): mean over "
                 "seeds, 95% bootstrap band where two seeds or more reach a step. Runs are "
                 "interpolated onto a common step grid within the steps each reached, never "
                 "beyond.", ""]
        families: dict[str, list[str]] = {}
        for task in sorted(evaluations.task.unique()):
            families.setdefault(task.split("/", 1)[0], []).append(task)
        for family, tasks in families.items():
            by_task = {t: {a: c for (task, a), c in success.items() if task == t} for t in tasks}
            panels = [(t.split("/", 1)[-1], "success rate", by_task[t]) for t in tasks]
            columns = 5
            if any(task in {t for t, _ in objects} for task in tasks):
                panels = [(f"{t.split('/', 1)[-1]}: success", "success rate", by_task[t])
                          for t in tasks]
                panels += [(f"{t.split('/', 1)[-1]}: objects", "objects completed",
                            {a: c for (task, a), c in objects.items() if task == t}) for t in tasks]
                columns = len(tasks)
            paths = plots.curve_panels(panels, self.colour, self.out / f"curves-{family}", columns)
            self.written += paths
            lines += [f"![{family} curves]({paths[0].name}) ({_links(paths)})", ""]
        all_tasks = set(evaluations.task.unique())
        if len(all_tasks) > 1:
            # Only algorithms with runs on every task, as in the tables: a mean over a subset
            # of the tasks would not be comparable with the others.
            complete = sorted(a for a, rows in evaluations.groupby("algorithm")
                              if set(rows.task) == all_tasks)
            curves = agg.aggregate_curves(evaluations[evaluations.algorithm.isin(complete)],
                                          self.reps) if complete else {}
            paths = plots.curve_panels([("mean over tasks", "success rate", curves)],
                                       self.colour, self.out / "curves-aggregate", 1)
            self.written += paths
            lines += ["Mean success over all tasks of the suite (band: runs resampled within "
                      "each task), up to the last step every task has reached:", "",
                      f"![aggregate curve]({paths[0].name}) ({_links(paths)})", ""]
            missing = sorted(set(evaluations.algorithm) - set(complete))
            if missing:
                lines += [f"Not in the aggregate curve (no finished run on some task): "
                          f"{', '.join(missing)}.", ""]
        self.sections += lines

    def _aggregates(self, final: pd.DataFrame, tasks: list[str]) -> None:
        scores = agg.score_arrays(final, tasks)
        left_out = sorted(set(final.algorithm) - set(scores))
        lines = ["## Aggregate statistics", "",
                 f"Over the {len(tasks)} tasks, from each run's final score (Agarwal et al., "
                 "2021, computed with rliable's metrics): IQM (mean of the middle 50% of all "
                 "runs), mean of per-task means, stratified bootstrap intervals (runs resampled "
                 "within each task).", ""]
        if left_out:
            lines += [f"Not aggregated (no finished run on some task): {', '.join(left_out)}.", ""]
        if not scores:
            self.sections += lines + ["No algorithm has finished runs on every task.", ""]
            return
        single = sorted(a for a, arrays in scores.items() if all(len(x) == 1 for x in arrays))
        if single:
            lines += [f"One seed per task for {', '.join(single)}: the bootstrap has nothing to "
                      "resample, so their intervals collapse to the point and say nothing about "
                      "uncertainty.", ""]
        intervals = agg.aggregates(scores, self.reps)
        improvement = None
        if plots.HIGHLIGHT in scores and len(scores) > 1:
            improvement = agg.improvement(scores, plots.HIGHLIGHT, self.reps)
        markdown, paths = tables.interval_table(intervals, improvement, self.out / "aggregates.md")
        self.written += paths
        lines += [markdown, _links(paths), ""]
        figure = plots.interval_panels(intervals, self.out / "aggregate-scores", self.colour)
        taus = agg.profile_taus(scores)
        profile = plots.profile_panel(agg.profiles(scores, taus, reps=self.reps), taus,
                                      self.out / "performance-profile", self.colour)
        self.written += figure + profile
        lines += [f"![IQM and mean]({figure[0].name}) ({_links(figure)})", "",
                  "Performance profile: the fraction of runs (all tasks) whose final success "
                  "exceeds τ.", "", f"![performance profile]({profile[0].name}) ({_links(profile)})", ""]
        if improvement is not None:
            figure = plots.improvement_panel(improvement, self.out / "improvement", self.colour)
            self.written += figure
            lines += [f"Probability of improvement: the chance that a {plots.HIGHLIGHT} run beats "
                      "a baseline run on a task drawn at random (0.5: no difference).", "",
                      f"![probability of improvement]({figure[0].name}) ({_links(figure)})", ""]
        self.sections += lines + self._twins(scores)

    def _twins(self, scores: dict) -> list[str]:
        """The PyTorch twins (label `X-torch` beside `X`) against their originals: if they
        implement the same method, the probability of improvement is near 0.5."""
        pairs = [(f"{label}-torch", label) for label in sorted(scores) if f"{label}-torch" in scores]
        if not pairs:
            return []
        table = pd.concat([agg.improvement({twin: scores[twin], original: scores[original]},
                                           twin, self.reps) for twin, original in pairs])
        path = self.out / "twins.csv"
        table.to_csv(path, index=False)
        self.written.append(path)
        rows = [f"| {r.algorithm} | {r.baseline} | {r.probability:.2f} [{r.low:.2f}, {r.high:.2f}] |"
                for r in table.itertuples()]
        return ["### PyTorch twins", "",
                "The probability that a run of the PyTorch twin beats a run of its JAX original "
                "on a task drawn at random, with its 95% stratified bootstrap interval. Near 0.5, "
                "with an interval around it, means that the two do not differ in what they "
                "reach. " + _links([path]), "",
                "| twin | original | P(twin > original) [95% CI] |", "|---|---|---|", *rows, ""]

    def _ablations(self, final: pd.DataFrame) -> None:
        """Labels that share an algorithm (moto, moto-no-bc, ...) are an ablation group."""
        names = {r.algorithm: r.name for r in self.loaded.finished()}
        groups: dict[str, list[str]] = {}
        for label, name in names.items():
            groups.setdefault(name, []).append(label)
        for name, labels in sorted(groups.items()):
            if len(labels) < 2:
                continue
            rows = final[final.algorithm.isin(labels)]
            stem = self.out / f"ablations-{name}"
            figure = plots.bars(agg.bootstrap_task_means(rows, self.reps), stem, self.colour,
                                f"{name} variants: final success, 95% bootstrap CI over seeds")
            markdown, paths = tables.score_table(agg.per_task(rows), stem,
                                                 f"Ablations of {name}: final success rate")
            self.written += figure + paths
            self.sections += [f"## Ablations of {name}", "",
                              f"![{name} ablations]({figure[0].name}) ({_links(figure)})", "",
                              markdown, _links(paths), ""]

    def _datasets(self, finished: list[Run]) -> None:
        records, differing = {}, []
        for run in finished:
            if not isinstance(run.dataset, dict):
                continue
            record = {"task": run.task, **{k: run.dataset.get(k) for k in (
                "episodes", "steps", "success_rate", "average_return", "policy", "data_seed")}}
            key = json.dumps(record, sort_keys=True, default=str)
            if run.task in {r["task"] for r in records.values()} and key not in records:
                differing.append(run.task)
            records.setdefault(key, record)
        if not records:
            return
        frame = pd.DataFrame(list(records.values())).sort_values("task", kind="stable")
        markdown, paths = tables.dataset_table(frame, self.out / "datasets")
        self.written += paths
        self.sections += ["## Offline datasets (Table 1)", "",
                          "The episodes each run trained on, as recorded in its config.yaml from "
                          "the dataset manifest when it started. " + _links(paths), "", markdown]
        if differing:
            self.sections += [f"**Runs of {', '.join(sorted(set(differing)))} trained on different "
                              "datasets** (one row each above).", ""]

    def _runs_behind(self, table: pd.DataFrame) -> None:
        lines = ["## Runs behind each number", "", "| task | algorithm | seeds | run directories |",
                 "|---|---|---|---|"]
        for row in table.itertuples():
            lines.append(f"| {row.task} | {row.algorithm} | {', '.join(map(str, row.seeds))} | "
                         + "<br>".join(f"`{r}`" for r in row.runs) + " |")
        self.sections += lines + [""]

    def _unfinished_and_skipped(self) -> None:
        unfinished = self.loaded.unfinished()
        lines = ["## Unfinished runs", ""]
        if unfinished or self.loaded.not_started:
            lines += ["Not in any table" + (" (drawn in the curves up to the steps they reached)"
                                            if self.include_unfinished else
                                            "; `--include-unfinished` draws them in the curves")
                      + ":", "", "| run | state | progress | evaluations |", "|---|---|---|---|"]
            lines += [f"| `{r.path}` | {r.state} | {r.progress} | {len(r.evaluations)} |"
                      for r in unfinished]
            lines += [f"| `{path}` | pending | not started | 0 |" for path in self.loaded.not_started]
        else:
            lines.append("None.")
        lines += ["", "## Skipped runs", ""]
        if self.loaded.skipped:
            lines += ["| file | problem |", "|---|---|"]
            lines += [f"| `{path}` | {why} |" for path, why in self.loaded.skipped]
        else:
            lines.append("None.")
        if self.loaded.ignored:
            lines += ["", "## Ignored in the results tree", "", "| entry | why |", "|---|---|"]
            lines += [f"| `{path}` | {why} |" for path, why in self.loaded.ignored]
        ignored = {f"{path}: {why}" for path, why in self.loaded.ignored}
        notes = [w for w in self.loaded.warnings if not w.endswith("run skipped")
                 and w.split("/", 1)[0] == self.suite and w not in ignored]
        if notes:
            lines += ["", "## Rows left out", "", *[f"- {w}" for w in notes]]
        self.sections += lines + [""]


def _links(paths: list[Path]) -> str:
    return ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths)
