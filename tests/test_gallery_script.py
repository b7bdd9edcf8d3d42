"""experiments/gallery.py makes what the MNIST page and the README show: every figure named there
is one the script writes, the page's numbers come from the script's generated include, and the
numbers the script computes itself agree with independent references. Fast: nothing here trains
the study."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmom

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "mnist.md"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
INCLUDE = re.compile(r"```\{include\} ([^\n]+)\n((?::[\w-]+: [^\n]*\n)*)```")


@pytest.fixture
def gallery(load_script):
    return load_script("gallery")


def test_every_figure_the_mnist_page_shows_is_one_the_gallery_writes(gallery):
    shown = IMAGE.findall(PAGE.read_text())
    assert len(shown) >= 7, shown
    for name in shown:
        assert name in gallery.FIGURES, (
            f"docs/mnist.md shows {name}, which gallery.py does not write"
        )
        assert (ROOT / "docs" / name).is_file(), name


def test_the_readmes_first_figure_is_one_the_gallery_writes(gallery):
    first = IMAGE.findall((ROOT / "README.md").read_text())[0]
    assert first.startswith("docs/") and first.removeprefix("docs/") in gallery.FIGURES, first


def test_each_demonstration_writes_the_figures_the_gallery_lists(gallery):
    """The gallery copies nothing for the demonstrations: each script writes its own names."""
    for demo, names in gallery.DEMOS.items():
        source = (ROOT / "experiments" / f"{demo}.py").read_text()
        for name in names:
            assert f'"{name}"' in source, (demo, name)
    gallery_source = (ROOT / "experiments" / "gallery.py").read_text()
    for name in gallery.STUDY_FIGURES:
        assert f'"{name}"' in gallery_source


def test_the_page_includes_the_generated_results_and_every_section_exists(gallery):
    page = PAGE.read_text()
    includes = INCLUDE.findall(page)
    assert includes, "docs/mnist.md includes nothing"
    generated = ROOT / "docs" / gallery.INCLUDE
    text = generated.read_text()
    assert text.startswith("<!-- Written by experiments/gallery.py")
    used = set()
    for target, options in includes:
        assert (PAGE.parent / target.strip()).resolve() == generated.resolve(), target
        start = re.search(r":start-after: (.*)", options)
        end = re.search(r":end-before: (.*)", options)
        assert start and end, options
        assert start[1] in text and end[1] in text, (start[1], end[1])
        used.add(start[1])
    for section in ("default", "family", "default-timing", "family-timing", "radam"):
        assert f"<!-- start: {section} -->" in used, section


def test_no_result_or_timing_is_typed_on_the_page():
    """Accuracies, losses and seconds of the study live in the include, not in the page's text;
    the one other table, between its markers, is written by experiments/mixed_precision.py."""
    prose = re.sub(r"^```.*?^```", "", PAGE.read_text(), flags=re.S | re.M)
    generated = r"<!-- mixed-precision: start -->.*?<!-- mixed-precision: end -->"
    assert re.search(generated, prose, flags=re.S)
    assert (
        "<!-- mixed-precision: start -->" in (ROOT / "experiments/mixed_precision.py").read_text()
    )
    prose = re.sub(generated, "", prose, flags=re.S)
    assert not re.findall(r"\d+\.\d+%", prose)  # accuracies such as 86.2%
    assert not re.findall(r"\b\d[\d.]*\s*(?:s|seconds)\b", prose)  # timings such as 10 s
    assert not re.findall(r"\| 0\.\d{3}", prose)  # a loss column typed in a table


def test_the_radam_factor_is_the_ratio_of_radams_step_to_adams(gallery):
    """At a constant gradient Adam's debiased m/sqrt(v) is 1, so RAdam's step over Adam's is
    r_t: measured with jaxmom's own optimizers, step by step."""
    t = 315
    record = {"hyperparameters": {"b2": 0.999}, "steps_per_epoch": 63, "epochs": 5}
    steps, factor = gallery.radam_rectification(record)
    assert steps == t

    def last_update(tx):  # t steps in one compiled loop (step by step eagerly took 20 s)
        p, g = jnp.zeros(()), jnp.ones(())

        def step(carry, _):
            u, state = tx.update(g, carry[1], p)
            return (u, state), None

        (u, _), _ = jax.lax.scan(step, (p, tx.init(p)), length=t)
        return float(u)

    ratio = last_update(jaxmom.radam(1e-3, eps=0.0)) / last_update(jaxmom.adam(1e-3, eps=0.0))
    np.testing.assert_allclose(factor, ratio, rtol=1e-4)  # float32 steps


def test_the_results_table_marks_the_same_path_and_leaves_missing_columns_empty(gallery):
    def run(label, losses, accuracy):
        return {
            "label": label,
            "optimizer": "sgd",
            "hyperparameters": {"learning_rate": 0.01, "momentum": 0.9, "nesterov": False},
            "epoch_train_loss": losses,
            "epoch_test_accuracy": accuracy,
            "final_train_loss": losses[-1],
            "test_accuracy": accuracy[-1],
        }

    runs = [run("a", [1.0, 0.5], [0.8, 0.9]), run("b", [1.0, 0.5], [0.8, 0.9])]
    runs.append(run("c", [1.0, 0.4], [0.8, 0.9123]))
    table = gallery.results_table({"here": runs, "there": None}).splitlines()
    assert table[0] == (
        "| run (optimizer: hyperparameters) | here: final train loss | test accuracy "
        "| there: final train loss | test accuracy |"
    )
    assert table[2] == "| a (`sgd`: lr 0.01, momentum 0.9) | 0.5000 | 90.00% | – | – |"
    assert table[3].startswith("| b (`sgd`: lr 0.01, momentum 0.9), the same path as a |")
    assert table[4] == "| c (`sgd`: lr 0.01, momentum 0.9) | 0.4000 | 91.23% | – | – |"


def test_a_run_on_the_same_path_in_one_column_only_says_where(gallery):
    def run(label, loss):
        return {
            "label": label,
            "optimizer": "sgd",
            "hyperparameters": {"learning_rate": 0.01},
            "epoch_train_loss": [1.0, loss],
            "epoch_test_accuracy": [0.5, 0.9],
            "final_train_loss": loss,
            "test_accuracy": 0.9,
        }

    here = [run("a", 0.5), run("b", 0.5)]
    there = [run("a", 0.5), run("b", 0.51)]
    table = gallery.results_table({"here": here, "there": there}).splitlines()
    assert table[3].startswith("| b (`sgd`: lr 0.01), the same path as a on here only |")
