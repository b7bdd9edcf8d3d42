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
    dots = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "None"]
    assert [list(d.get_ydata()) for d in dots] == [r["epoch_train_loss"] for r in runs]


def test_the_eleven_runs_differ_in_marker_shape_as_well_as_colour():
    """tab10's pink and purple (lion, radam) could not be told apart as thin lines: every run has
    its own marker shape, on its epoch means, its accuracy line and its legend entry."""
    from jaxmom.studies.mnist import report

    base = np.array([2.0, 1.5, 1.1, 0.9])
    runs = [_run(f"run {i}", base * (1 + 0.1 * i), [1.6 + i, 0.9 + i]) for i in range(11)]
    fig = report.loss_curves(runs, "title")
    loss, acc = fig.axes[:2]
    legend = [h.get_marker() for h in fig.legends[0].legend_handles]
    means = [line.get_marker() for line in loss.get_lines() if line.get_linestyle() == "None"]
    accuracy = [line.get_marker() for line in acc.get_lines()]
    assert len(set(legend)) == 11 and legend == means == accuracy
    looks = {(to_rgb(h.get_color()), h.get_marker()) for h in fig.legends[0].legend_handles}
    assert len(looks) == 11


def test_the_epoch_means_sit_where_the_smoothed_curve_ends_and_the_loss_axis_reads_plainly():
    """The smoothed curve stopped at epoch 4.76 (the last logged batch) while the last mean sat at
    5: each mean sits at its epoch's last logged batch, so the last one ends the curve. The log
    axis read 2×10⁰: its labels are plain numbers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from jaxmom.studies.mnist import report

    steps = list(range(0, 315, 30))  # 63 steps an epoch, 5 epochs, a loss every 30 steps
    losses = 2.3 * np.exp(-np.arange(len(steps)) / 4)
    run = _run("sgd", losses, [1.9, 1.1, 0.7, 0.5, 0.4], accuracy=[0.8] * 5)
    run.update(steps_per_epoch=63, log_every=30, logged_steps=steps)
    assert report.mean_positions(run) == [60 / 63, 120 / 63, 180 / 63, 240 / 63, 300 / 63]
    fig = report.loss_curves([run], "title")
    ax = fig.axes[0]
    curve = max(ax.get_lines(), key=lambda line: line.get_linewidth())
    (means,) = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert max(means.get_xdata()) == max(curve.get_xdata()) == 300 / 63
    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    low, high = ax.get_ylim()
    shown = [float(t) for t in labels if low <= float(t) <= high]
    assert len(shown) >= 3 and all(re.fullmatch(r"[0-9.]+", t) for t in labels), labels


def tick_gaps(labels, renderer) -> list[tuple[str, str, float, float]]:
    """Neighbouring tick labels along x: (left, right, the gap between their boxes, the wider
    box's width), in pixels."""
    boxes = sorted(
        ((t.get_window_extent(renderer), t.get_text()) for t in labels if t.get_text()),
        key=lambda pair: pair[0].x0,
    )
    return [
        (a, b, box_b.x0 - box_a.x1, max(box_a.width, box_b.width))
        for (box_a, a), (box_b, b) in zip(boxes, boxes[1:])
    ]


NUMBERS = {3: "three", 4: "four", 5: "five"}


def test_the_comparison_title_counts_and_names_the_optimizers_it_draws(load_script):
    """The title said 'four optimizers' and listed three functions: it is made from COMPARISON."""
    regression = load_script("regression")
    fig = regression.plot_comparison(regression.comparison_paths())
    title = fig.get_suptitle()
    rows = regression.COMPARISON
    assert f"{NUMBERS[len(rows)]} optimizers" in title
    assert all(row[0] in title for row in rows), title
    fewer = regression.comparison_title(rows[:3])
    assert "three optimizers" in fewer and rows[3][0] not in fewer
    assert "jaxmom.adam" not in fewer and "jaxmom.adam" in title


def test_the_surface_label_clears_its_ticks_and_the_colour_bars_read_in_round_numbers(load_script):
    """The 3-D 'loss' label touched its tick labels (2 px from '300'); the colour bars were
    labelled at the contour levels (257, 72.4, 20.4)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    regression = load_script("regression")
    x, y = tutorials.regression_data()
    path = tutorials.regression_paths([regression.LR], [regression.MOMENTUM], steps=100)[0]
    fig = regression.plot_run(path, tutorials.regression_loss(path[:, 0], path[:, 1], x, y))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax3d = fig.axes[0]
    label = ax3d.zaxis.label.get_window_extent(renderer)
    low, high = ax3d.get_zlim()
    ticks = [t for t in ax3d.zaxis.get_major_ticks() if low <= t.get_loc() <= high]
    assert len(ticks) >= 4
    for tick in ticks:
        box = tick.label1.get_window_extent(renderer)
        if box.y1 > label.y0 and box.y0 < label.y1:  # beside the label
            assert label.x0 - box.x1 > 8, (tick.label1.get_text(), label.x0 - box.x1)
    comparison = regression.plot_comparison(regression.comparison_paths())
    for figure in (fig, comparison):
        FigureCanvasAgg(figure).draw()
        (bar,) = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
        low, high = bar.get_ylim()
        values = [float(t.get_text()) for t in bar.get_yticklabels() if t.get_text()]
        values = [v for v in values if low <= v <= high]
        assert len(values) >= 3
        for v in values:  # 1, 2 or 5 times a power of ten
            mantissa = v / 10 ** np.floor(np.log10(v) + 1e-9)
            assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6, values


def test_the_tuning_figure_spaces_its_ticks_and_does_not_magnify_one_seeds_noise(load_script):
    """189 and 243 configuration-epochs were two labels crowded into one; an 84-88% axis made a
    single seed's noise look large. Drawn from the saved JSON (no rerun) and from a made-up one."""
    import json
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tuning = load_script("tuning")
    saved = Path(__file__).resolve().parents[1] / "docs" / "tuning_benchmark.json"

    def curve(spends, accuracy):
        return [{"config_epochs": s, "test_accuracy": a, "val_accuracy": a} for s, a in
                zip(spends, accuracy)]  # fmt: skip

    made_up = {
        "dataset": "made-up", "seed": 3, "trials": 81,
        "searches": {
            "halving": {"configurations": 81, "config_epochs": 189,
                        "curve": curve([81, 135, 189], [0.841, 0.863, 0.8795])},
            "random": {"configurations": 81, "config_epochs": 729,
                       "curve": curve(range(81, 730, 81), np.linspace(0.84, 0.88, 9))},
        },
    }  # fmt: skip
    for record in (json.loads(saved.read_text()), made_up):
        fig = Figure(figsize=(6.4, 4.0))
        tuning.draw(fig, record)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        ax = fig.axes[0]
        gaps = tick_gaps(ax.get_xticklabels(), canvas.get_renderer())
        assert len(gaps) >= 2
        for left, right, gap, width in gaps:
            assert gap > 2 * width, (left, right, gap, width)
        assert "189" in [t.get_text() for t in ax.get_xticklabels()]  # halving's spend
        low, high = ax.get_ylim()
        assert high - low >= 10 and high <= 100
        assert f"one training seed ({record['seed']})" in ax.get_title()


def test_the_epoch_smoothing_averages_about_one_epoch_of_logged_losses():
    from jaxmom.studies.mnist import report

    assert report.epoch_beta({"log_every": 30, "steps_per_epoch": 63}) == 1 - 30 / 63
    assert report.epoch_beta({"log_every": 100, "steps_per_epoch": 63}) == 0.0
    # beta 0: the smoothed curve is the logged losses themselves
    np.testing.assert_allclose(report.smoothed([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
