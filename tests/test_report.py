"""The report's figure."""

import matplotlib
import pandas as pd

from harness.report import plot_curves

matplotlib.use("Agg")


def test_curves_keep_one_colour_per_algorithm_and_one_legend_beside_the_panels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure plot_curves draws
    rows = [(task, algorithm, steps, 0.5)
            for task, algorithms in (("a/one", ["bc", "sac"]), ("b/two", ["sac"]))
            for algorithm in algorithms for steps in (0, 100)]
    runs = pd.DataFrame(rows, columns=["task", "algorithm", "env_steps", "eval_success"])
    plot_curves(runs, tmp_path / "curves.png")
    (fig,) = figures
    panels = fig.axes
    sac_colours = [line.get_color() for ax in panels for line in ax.get_lines()
                   if line.get_color() != panels[0].get_lines()[0].get_color()]
    # bc is drawn only in the first panel; sac's colour must be the same in both panels,
    # although it is the first (and only) algorithm of the second.
    assert len(sac_colours) == 2 and sac_colours[0] == sac_colours[1]
    assert all(ax.get_legend() is None for ax in panels)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["bc", "sac"]
    assert (tmp_path / "curves.png").stat().st_size > 5_000
