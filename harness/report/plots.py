"""The report's figures, each written as PNG and PDF.

Every figure of a report gives an algorithm the same colour (`colours`), draws MOTO thicker
and on top, and puts one legend outside the panels, so it never covers a curve.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

HIGHLIGHT = "moto"
# Fixed colours for the eight algorithms of the paper, so figures of different reports agree:
# Okabe and Ito's palette for colour-blind readers, its yellow (too faint as a line on white)
# replaced by grey. Other labels (ablation variants, presets) take the spare colours, from
# Paul Tol's muted scheme, in sorted order.
FIXED = {"moto": "#D55E00", "dreamerv2": "#0072B2", "lompo": "#E69F00", "combo": "#009E73",
         "cql": "#CC79A7", "iql": "#56B4E9", "sac": "#000000", "bc": "#999999"}
SPARE = ["#882255", "#44AA99", "#999933", "#332288", "#117733", "#AA4499", "#88CCEE",
         "#DDCC77", "#661100", "#6699CC"]
ORDER = list(FIXED)


def order(labels) -> list[str]:
    """Labels in a fixed order: the paper's algorithms first (MOTO first), then the rest."""
    labels = set(labels)
    return [l for l in ORDER if l in labels] + sorted(labels - set(ORDER))


def colours(labels) -> dict[str, str]:
    others = [l for l in order(labels) if l not in FIXED]
    spare = {l: SPARE[i % len(SPARE)] for i, l in enumerate(others)}
    return {l: FIXED.get(l) or spare[l] for l in order(labels)}


def _style(label: str) -> dict:
    if label == HIGHLIGHT:
        return {"linewidth": 2.6, "zorder": 5}
    return {"linewidth": 1.4, "zorder": 3}


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=110)
    fig.set_layout_engine("none")  # keep the layout the PNG computed: the PDF is the same in inches
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _legend(fig, handles: dict, seeds: dict | None = None) -> None:
    """One legend outside the panels: on the right of a single panel, below several (in as
    many columns as the figure's width holds: constrained layout makes room for the legend
    but cannot make a too-wide one fit). With `seeds`, each entry says how many runs (seeds)
    its curves average at most."""
    names = order(handles)
    shown = [f"{n} ({seeds[n]} seed{'s' if seeds[n] != 1 else ''})" if seeds else n for n in names]
    if len([ax for ax in fig.axes if ax.get_visible() and ax.axison]) == 1:
        where, columns = "outside right upper", 1
    else:
        entry_inches = 0.075 * max(len(n) for n in shown) + 0.75   # 9-pt text plus the handle
        where = "outside lower center"
        columns = max(1, min(len(names), int(fig.get_figwidth() // entry_inches)))
    fig.legend([handles[n] for n in names], shown, loc=where, ncol=columns, frameon=False,
               fontsize=9)


def curve_panels(panels: list[tuple[str, str, dict]], colour_of: dict, stem: Path,
                 columns: int = 5, ylim: tuple | None = (-0.03, 1.03)) -> list[Path]:
    """One panel per (title, y label, {label: Curve}): mean line, 95% band where a point
    averages two runs or more; x is online env steps."""
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    size = (2.9 * columns + 0.4, 2.45 * rows + 0.7) if len(panels) > 1 else (6.0, 3.6)
    # Panels of a row share their y axis (success in [0, 1]; Kitchen's second row, objects):
    # tick labels only on the left, less to read and less to lay out.
    fig, axes = plt.subplots(rows, columns, figsize=size, sharey="row", squeeze=False,
                             layout="constrained")
    handles, seeds = {}, {}
    last_step = max((c.steps[-1] for _, _, curves in panels for c in curves.values()
                     if len(c.steps)), default=0)
    for ax, (title, ylabel, curves) in zip(axes.flat, panels):
        for label in order(curves):
            curve = curves[label]
            (handles[label],) = ax.plot(curve.steps, curve.mean, color=colour_of[label],
                                        label=label, **_style(label))
            seeds[label] = max(seeds.get(label, 0), int(np.max(curve.runs, initial=0)))
            band = curve.runs >= 2
            if band.any():
                ax.fill_between(curve.steps, curve.low, curve.high, where=band,
                                color=colour_of[label], alpha=0.18, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
        if last_step > 0:  # the axis ends at the budget, so its last tick labels the end
            ax.set_xlim(0, last_step)
        ax.tick_params(labelsize=8)
        if ylim and ylabel.startswith("success"):
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.25)
    for index, (ax, (_, ylabel, _)) in enumerate(zip(axes.flat, panels)):
        if index % columns == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if index >= len(panels) - columns:
            ax.set_xlabel("online env steps", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    _legend(fig, handles, seeds)
    return _save(fig, stem)


def interval_panels(table, stem: Path, colour_of: dict) -> list[Path]:
    """IQM and mean final success per algorithm, with 95% stratified-bootstrap intervals."""
    labels = order(table.algorithm)[::-1]
    rows = table.set_index("algorithm").loc[labels]
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 0.45 * len(labels) + 1.3), sharey=True,
                             layout="constrained")
    for ax, metric, name in zip(axes, ("iqm", "mean"), ("IQM", "Mean")):
        for y, label in enumerate(labels):
            low, high = rows.loc[label, f"{metric}_low"], rows.loc[label, f"{metric}_high"]
            ax.barh(y, high - low, left=low, height=0.6, color=colour_of[label], alpha=0.75)
            ax.plot([rows.loc[label, metric]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.5)
            if high - low < 1e-9:  # a collapsed interval (one seed, or all runs equal): say so
                ax.plot(low, y, marker="D", color=colour_of[label], markersize=5)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(f"{name} of final success", fontsize=10)
        ax.grid(axis="x", alpha=0.25)
    fig.supxlabel("final success rate (bar: 95% interval; diamond: an interval of zero width)",
                  fontsize=9)
    return _save(fig, stem)


def improvement_panel(table, stem: Path, colour_of: dict) -> list[Path]:
    """P(highlighted algorithm > baseline) with 95% bootstrap intervals, one row a baseline."""
    baselines = order(table.baseline)[::-1]
    rows = table.set_index("baseline").loc[baselines]
    over = table.algorithm.iloc[0]
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(baselines) + 1.3), layout="constrained")
    for y, baseline in enumerate(baselines):
        low, high = rows.loc[baseline, "low"], rows.loc[baseline, "high"]
        ax.barh(y, high - low, left=low, height=0.6, color=colour_of[baseline], alpha=0.75)
        ax.plot([rows.loc[baseline, "probability"]] * 2, [y - 0.3, y + 0.3], color="black",
                linewidth=1.5)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(baselines)), [f"{over} vs {b}" for b in baselines], fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"P({over} > baseline)", fontsize=9)
    ax.set_title("probability of improvement", fontsize=10)
    ax.grid(axis="x", alpha=0.25)
    return _save(fig, stem)


def profile_panel(curves: dict, taus: np.ndarray, stem: Path, colour_of: dict) -> list[Path]:
    """Fraction of runs with final success above tau, with 95% bootstrap bands: steps that
    drop at the observed scores (`taus` holds them), constant in between."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    handles = {}
    for label in order(curves):
        point, low, high = curves[label]
        (handles[label],) = ax.step(taus, point, where="post", color=colour_of[label],
                                    label=label, **_style(label))
        ax.fill_between(taus, low, high, step="post", color=colour_of[label], alpha=0.15,
                        linewidth=0)
    ax.set_xlabel(r"final success $\tau$", fontsize=9)
    ax.set_ylabel(r"fraction of runs with score $> \tau$", fontsize=9)
    ax.set_title("performance profile", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.25)
    _legend(fig, handles)
    return _save(fig, stem)


def bars(table, stem: Path, colour_of: dict, title: str) -> list[Path]:
    """Grouped bars: tasks along x, one bar per label, 95% bootstrap intervals over seeds."""
    tasks = sorted(table.task.unique())
    labels = order(table.algorithm)
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(tasks) * len(labels) * 0.35 + 2), 3.8),
                           layout="constrained")
    handles = {}
    for i, label in enumerate(labels):
        rows = table[table.algorithm == label].set_index("task")
        xs = [t for t, task in enumerate(tasks) if task in rows.index]
        sel = rows.loc[[tasks[x] for x in xs]]
        mean, low, high = (sel[c].to_numpy(float) for c in ("mean", "low", "high"))
        handles[label] = ax.bar(np.array(xs) - 0.4 + width * (i + 0.5), mean, width,
                                yerr=np.stack([mean - low, high - mean]),
                                color=colour_of[label], capsize=2, error_kw={"linewidth": 1},
                                edgecolor="black" if label == HIGHLIGHT else "none")
    # Upright: 10 MetaWorld names side by side ran into one another
    # ("button-press-topdowndoor-open"), and slanted ones still overlap their neighbours.
    ax.set_xticks(range(len(tasks)), [t.split("/", 1)[-1] for t in tasks], fontsize=9,
                  rotation=90)
    ax.set_ylabel("final success", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.25)
    _legend(fig, handles)
    return _save(fig, stem)
