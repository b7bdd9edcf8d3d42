"""The gallery's figures show what they claim: every line on its axes, markers that cannot be
confused, legends that cover no curve, and printed numbers that say why they differ from theory."""

import re

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from jaxmom.studies import tutorials


def titled(fig, title):
    """The axes of ``fig`` whose title is ``title``."""
    return next(ax for ax in fig.axes if ax.get_title() == title)


def distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))))


def test_every_fitted_line_of_the_regression_figure_is_on_its_axes(load_script):
    regression = load_script("regression")
    x, y = tutorials.regression_data()
    path = tutorials.regression_paths([regression.LR], [regression.MOMENTUM], steps=100)[0]
    fig = regression.plot_run(path, tutorials.regression_loss(path[:, 0], path[:, 1], x, y))
    ax = titled(fig, "data and the fitted line")  # bottom left
    low, high = ax.get_ylim()
    lines = [line for line in ax.get_lines() if len(line.get_ydata()) == 2]
    assert len(lines) == 5  # steps 40, 60, 80, the last step, least squares
    for line in lines:
        ends = np.asarray(line.get_ydata())
        assert low <= ends.min() and ends.max() <= high, (line.get_label(), ends, (low, high))


def test_the_start_the_minimum_and_the_optimizers_have_distinct_colours(load_script):
    regression = load_script("regression")
    fig = regression.plot_comparison(regression.comparison_paths())
    paths, curves = fig.axes[0], titled(fig, "loss per step")
    least_squares = next(
        line for line in curves.get_lines() if line.get_label() == "least-squares minimum"
    )
    starts = [
        line
        for line in paths.get_lines()
        if line.get_marker() == "s" and len(line.get_xdata()) == 1
    ]
    assert len(starts) == 1 and starts[0].get_label() == "start (10, -20)"
    start = starts[0].get_color()
    colours = [row[-1] for row in regression.COMPARISON]
    for colour in [least_squares.get_color(), *colours]:
        assert distance(start, colour) > 0.3, (start, colour)
    for colour in colours:  # no optimizer looks like the least-squares line or the gold star
        assert distance(colour, least_squares.get_color()) > 0.3, colour
        assert distance(colour, "gold") > 0.3, colour


def test_the_convergence_panels_have_no_legend_on_their_curves(load_script):
    convergence = load_script("convergence")
    kappas = (10.0, 100.0, 1000.0, 10000.0)
    results = {**convergence.run(kappas, steps=400), **convergence.run_family(kappas, steps=400)}
    fig = convergence.plot(results, kappas)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("κ =")]
    assert len(panels) == 4 and all(ax.get_legend() is None for ax in panels)
    assert len(fig.legends) == 1  # one shared legend, outside the panels
    renderer = fig.canvas.get_renderer()  # pyright: ignore[reportAttributeAccessIssue]
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in panels:
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_the_printed_gaps_are_explained_by_the_repeated_root(load_script, tmp_path, capsys):
    load_script("convergence").main(["--out", str(tmp_path)])
    rows = [
        line for line in capsys.readouterr().out.splitlines() if "kappa" in line and "|" in line
    ]
    assert len(rows) == 20
    for row in rows:
        gap = float(re.search(r"\| ([+-]\d+\.\d+)% \(", row)[1])
        if "simple root" in row:
            assert abs(gap) < 0.1, row
        else:
            assert "repeated root" in row, row
            predicted = float(re.search(r"alone gives ([+-]\d+\.\d+)%", row)[1])
            # the window ends at the 1e-100 floor: t·ρ^t is the whole story; where 20000 steps end
            # it first (QHM at kappa 10000) the constant a still counts and the gap is smaller
            assert predicted - 0.5 <= gap <= predicted + 0.5 * abs(predicted), row
            assert gap < 0


def test_repeated_root_bias_is_what_measured_rate_reads_on_t_rho_to_the_t():
    t = np.arange(1, 4001.0)
    for rho in (0.9, 0.99):
        errors = t * rho**t  # e_t = t ρ^t, indexed from step 1
        t1, t2 = tutorials.measurement_window(errors)
        gap = np.log(tutorials.measured_rate(errors)) / np.log(rho) - 1
        assert gap == pytest.approx(tutorials.repeated_root_bias(rho, t1 + 1, t2 + 1), rel=1e-9)
        assert gap < 0


def _run(label, losses, epoch_means, accuracy=(0.5, 0.6)):
    return dict(
        label=label,
        optimizer="sgd",
        final_train_loss=epoch_means[-1],
        steps_per_epoch=4,
        log_every=2,
        logged_steps=list(range(0, 2 * len(losses), 2)),
        logged_loss=list(losses),
        epoch_train_loss=list(epoch_means),
        epoch_test_accuracy=list(accuracy),
    )


def test_the_study_figure_names_runs_on_the_same_path_and_gives_each_run_its_own_look():
    """Eleven runs (the family study's count): no two share colour and line style; a run equal to
    an earlier one says 'same path', one within 2% says whose path and how close (adamw on adam's),
    and the title says the bold curve is smoothed and the dots are each epoch's mean."""
    from jaxmom.studies.mnist import report

    base = np.array([2.0, 1.5, 1.1, 0.9])
    runs = [_run(f"run {i}", base * (1 + 0.1 * i), [1.6 + i, 0.9 + i]) for i in range(9)]
    runs.insert(1, _run("twin", base * (1 + 1e-5), [1.6, 0.9]))
    runs.insert(3, _run("near", base * 1.1 * 1.01, [2.6 * 1.005, 1.9]))
    fig = report.loss_curves(runs, "title")
    labels = fig.legends[0].get_texts()
    assert len(labels) == 11
    assert labels[1].get_text() == "twin: 0.900 (same path as run 0)"
    assert labels[3].get_text() == "near: 1.900 (run 1's path, within 1.0%)"
    assert not any("path" in t.get_text() for i, t in enumerate(labels) if i not in (1, 3))
    handles = fig.legends[0].legend_handles
    looks = {(to_rgb(h.get_color()), str(h.get_linestyle())) for h in handles}
    assert len(looks) == 11
    title = fig.axes[0].get_title()
    assert "smoothed" in title and "each epoch's mean" in title
    dots = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert [list(d.get_ydata()) for d in dots] == [r["epoch_train_loss"] for r in runs]


def test_the_epoch_smoothing_averages_about_one_epoch_of_logged_losses():
    from jaxmom.studies.mnist import report

    assert report.epoch_beta({"log_every": 30, "steps_per_epoch": 63}) == 1 - 30 / 63
    assert report.epoch_beta({"log_every": 100, "steps_per_epoch": 63}) == 0.0
    # beta 0: the smoothed curve is the logged losses themselves
    np.testing.assert_allclose(report.smoothed([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
