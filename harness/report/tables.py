"""The report's tables, each as Markdown (for report.md), CSV (for analysis) and LaTeX (for the
paper: booktabs, best in bold)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.report.plots import order


def _cell(mean: float, std: float) -> str:
    spread = "–" if math.isnan(std) else f"{std:.2f}"
    return f"{mean:.2f} ± {spread}"


def best_labels(table: pd.DataFrame) -> dict[str, set[str]]:
    """{task: labels with the highest mean final score on it}: all of them when several tie,
    none when every label ties or only one label ran the task (then nothing is best)."""
    best = {}
    for task, rows in table.groupby("task"):
        top = rows["mean"].max()
        best[task] = set(rows[rows["mean"] >= top - 1e-12].algorithm)
        if len(best[task]) == len(rows):
            best[task] = set()
    return best


def best_counts(table: pd.DataFrame) -> list[str]:
    """Lines like 'moto: best on 9/10 tasks' (ties count for each tied label), most first."""
    best = best_labels(table)
    counts = {label: sum(label in labels for labels in best.values())
              for label in order(table.algorithm)}
    return [f"{label}: best on {count}/{len(best)} tasks" + (" (ties included)" if any(
            len(labels) > 1 and label in labels for labels in best.values()) else "")
            for label, count in sorted(counts.items(), key=lambda kv: -kv[1]) if count]


def score_table(table: pd.DataFrame, stem: Path, caption: str) -> tuple[str, list[Path]]:
    """Tasks × labels of `mean ± std` with the seed count, best per task in bold, and a last
    row with the mean over tasks. Writes .md, .csv, .tex; returns the Markdown and the paths."""
    labels = order(table.algorithm)
    tasks = sorted(table.task.unique())
    best = best_labels(table)
    cells = table.set_index(["task", "algorithm"])

    def rows():
        """(task, [(text, is_best, n) or None per label]) per task."""
        for task in tasks:
            row = []
            for label in labels:
                if (task, label) not in cells.index:
                    row.append(None)
                    continue
                c = cells.loc[(task, label)]
                row.append((_cell(c["mean"], c["std"]), label in best[task], int(c["n"])))
            yield task, row

    def md_cell(entry):
        if entry is None:
            return ""
        text, is_best, n = entry
        return (f"**{text}**" if is_best else text) + f" ({n})"

    def tex_cell(entry):
        if entry is None:
            return ""
        text, is_best, n = entry
        text = text.replace(" ± ", r" $\pm$ ")
        return (f"\\textbf{{{text}}}" if is_best else text) + f" ({n})"

    means = table.groupby("algorithm")["mean"].agg(["mean", "count"])
    complete = {l: means.loc[l, "count"] == len(tasks) for l in labels}
    average = ["mean over tasks"] + [f"{means.loc[l, 'mean']:.2f}" if complete[l] else "–"
                                     for l in labels]

    md = ["| task | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    md += ["| " + " | ".join([task, *map(md_cell, row)]) + " |" for task, row in rows()]
    md.append("| " + " | ".join(f"*{v}*" for v in average) + " |")
    markdown = "\n".join(md) + "\n"

    tex = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_tex(caption)}}}",
           r"\begin{tabular}{l" + "c" * len(labels) + "}", r"\toprule",
           "task & " + " & ".join(_tex(l) for l in labels) + r" \\", r"\midrule"]
    tex += [" & ".join([_tex(task), *map(tex_cell, row)]) + r" \\" for task, row in rows()]
    tex += [r"\midrule", " & ".join(_tex(v) for v in average) + r" \\", r"\bottomrule",
            r"\end{tabular}", r"\end{table}"]

    csv = table.drop(columns=["runs"], errors="ignore").assign(
        best=[row.algorithm in best[row.task] for row in table.itertuples()],
        seeds=[" ".join(map(str, s)) for s in table.seeds])
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")]
    paths[0].write_text(markdown)
    csv.to_csv(paths[1], index=False)
    paths[2].write_text("\n".join(tex) + "\n")
    return markdown, paths


def dataset_table(datasets: pd.DataFrame, stem: Path) -> tuple[str, list[Path]]:
    """The paper's Table 1: per task, the offline episodes the runs trained on."""
    columns = ["task", "episodes", "steps", "success_rate", "average_return", "policy", "data_seed"]
    datasets = datasets.reindex(columns=columns)
    md = ["| task | episodes | steps | success rate | average return | policy |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r.task} | {r.episodes} | {r.steps} | {r.success_rate:.2f} | "
           f"{r.average_return:.1f} | {r.policy} |" for r in datasets.itertuples()]
    tex = [r"\begin{tabular}{lrrrr}", r"\toprule",
           r"task & episodes & steps & success rate & average return \\", r"\midrule"]
    tex += [f"{_tex(r.task)} & {r.episodes} & {r.steps} & {r.success_rate:.2f} & "
            f"{r.average_return:.1f} \\\\" for r in datasets.itertuples()]
    tex += [r"\bottomrule", r"\end{tabular}"]
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")]
    paths[0].write_text("\n".join(md) + "\n")
    datasets.to_csv(paths[1], index=False)
    paths[2].write_text("\n".join(tex) + "\n")
    return "\n".join(md) + "\n", paths


def interval_table(table: pd.DataFrame, improvement: pd.DataFrame | None, path: Path
                   ) -> tuple[str, list[Path]]:
    """IQM, mean and probability of improvement with their 95% intervals, one row per label."""
    over = improvement.algorithm.iloc[0] if improvement is not None and len(improvement) else None
    poi = improvement.set_index("baseline") if over else None
    head = "| algorithm | IQM [95% CI] | mean [95% CI] | " + (
        f"P({over} > algorithm) [95% CI] | " if over else "") + "runs | tasks |"
    md = [head, "|---" * (head.count("|") - 1) + "|"]
    for label in order(table.algorithm):
        r = table.set_index("algorithm").loc[label]
        cells = [label, f"{r.iqm:.2f} [{r.iqm_low:.2f}, {r.iqm_high:.2f}]",
                 f"{r['mean']:.2f} [{r.mean_low:.2f}, {r.mean_high:.2f}]"]
        if over:
            cells.append("–" if label not in poi.index else
                         f"{poi.loc[label, 'probability']:.2f} [{poi.loc[label, 'low']:.2f}, "
                         f"{poi.loc[label, 'high']:.2f}]")
        cells += [str(int(r.runs)), str(int(r.tasks))]
        md.append("| " + " | ".join(cells) + " |")
    merged = table if not over else table.merge(
        improvement.rename(columns={"baseline": "algorithm_", "probability": f"p_{over}_better",
                                    "low": f"p_{over}_better_low", "high": f"p_{over}_better_high"})
        .drop(columns="algorithm").rename(columns={"algorithm_": "algorithm"}),
        on="algorithm", how="left")
    path.write_text("\n".join(md) + "\n")
    merged.to_csv(path.with_suffix(".csv"), index=False)
    return "\n".join(md) + "\n", [path, path.with_suffix(".csv")]


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "±": r"$\pm$"}


def _tex(text: str) -> str:
    """Plain text as LaTeX: each special character escaped once, in one pass (escaping them one
    after another would escape the braces of an earlier escape), ± as math-mode pm."""
    return re.sub("|".join(map(re.escape, _TEX_ESCAPES)), lambda m: _TEX_ESCAPES[m.group()], text)
