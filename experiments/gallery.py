"""Regenerates every figure and measured number of docs/mnist.md, and README's first figure.

    python3 experiments/gallery.py            # offline; a few minutes on a 2-core CPU
    python3 experiments/gallery.py --fashion-dir ''   # without the Fashion-MNIST columns

It runs the MNIST study as ``experiments/mnist.py`` does (``jaxmom.studies.mnist.cli.main``):
the default study and ``--study family`` on the embedded 4,000/1,000 MNIST subset, and both on the
full Fashion-MNIST when ``--fashion-dir`` holds its IDX files (Debian's ``dataset-fashion-mnist``
puts them in the default folder). Then it runs the demonstrations (ema, quadratic, regression,
convergence), each writing its own figures. Everything goes into ``--docs`` (default ``docs/``):

- the figures: :data:`FIGURES`;
- ``_generated/mnist_results.md``: the results tables, the timings, and the numbers that
  docs/mnist.md's prose quotes, in sections between ``<!-- start: NAME -->`` and
  ``<!-- end: NAME -->`` that the page includes (MyST's ``{include}`` with ``:start-after:`` and
  ``:end-before:``), so that no number on the page is typed by hand.

Every file is written whole (``jaxmom.sweep.atomic_open``: a temporary file, then ``os.replace``).
"""

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # a script picks the backend; the library never does

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxmom.studies.mnist import cli  # noqa: E402
from jaxmom.sweep import (  # noqa: E402
    add_compile_cache_flags,
    check_writable,
    configure_compile_cache,
    nan_if_null,
    write_bytes,
    write_text,
)

EXPERIMENTS = Path(__file__).resolve().parent
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
INCLUDE = Path("_generated") / "mnist_results.md"

# The study's figures: docs name -> the --study it shows (loss_curves.png of that run).
STUDY_FIGURES = {"mnist_loss_curves.png": "tutorials", "family_loss_curves.png": "family"}
# The demonstrations: script -> the figures it writes into --out.
DEMOS = {
    "ema": ("ema.png",),
    "quadratic": ("quadratic.png",),
    "regression": ("regression.png", "regression_optimizers.png"),
    "convergence": ("convergence.png",),
}
FIGURES = (*STUDY_FIGURES, *(name for names in DEMOS.values() for name in names))


def run_study(study: str, out: Path, data: list[str]) -> tuple[list[dict], float]:
    """``experiments/mnist.py --study STUDY`` with the data flags ``data``, writing into ``out``;
    its records (results.json's runs) and its wall time in seconds, data loading included."""
    argv = ["--study", study, "--quiet", "--overwrite", "--out", str(out), *data]
    start = time.perf_counter()
    status = cli.main(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"gallery.py: error: mnist.py {' '.join(argv)} exited with {status}")
    return json.loads((out / "results.json").read_text())["runs"], seconds


def load_demo(name: str):
    """``experiments/<name>.py`` as a module (its ``main(argv)`` writes the figures)."""
    sys.path.insert(0, str(EXPERIMENTS))  # the demos import their neighbour _plotting
    spec = importlib.util.spec_from_file_location(f"gallery_{name}", EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_demo(name: str, docs: Path) -> tuple[str, float]:
    """Runs demonstration ``name`` with ``--out docs``; what it printed (also shown) and its wall
    time in seconds."""
    printed, shown = io.StringIO(), sys.stdout

    class Tee(io.TextIOBase):
        def write(self, text):
            shown.write(text)
            return printed.write(text)

    start = time.perf_counter()
    with contextlib.redirect_stdout(Tee()):
        load_demo(name).main(["--out", str(docs)])
    return printed.getvalue(), time.perf_counter() - start


def twins(records: list[dict]) -> dict[str, str]:
    """Label -> the earlier run's label, for runs whose every epoch's mean training loss and test
    accuracy equal an earlier run's to 1e-6 (the two momentum forms)."""
    found = {}
    # as floats: results.json writes NaN as null, which np.asarray(..., float) reads as NaN
    curves = lambda rec: [
        np.asarray(rec[k], float) for k in ("epoch_train_loss", "epoch_test_accuracy")
    ]
    for i, r in enumerate(records):
        for q in records[:i]:
            if all(np.allclose(a, b, rtol=1e-6) for a, b in zip(curves(q), curves(r))):
                found[r["label"]] = q["label"]
                break
    return found


def hyperparameters(record: dict) -> str:
    """The run's numeric hyperparameters that differ from 0, as ``lr 0.01, momentum 0.9``."""
    short = {"learning_rate": "lr"}
    return ", ".join(
        f"{short.get(k, k)} {','.join(f'{x:g}' for x in v) if isinstance(v, list) else f'{v:g}'}"
        for k, v in record["hyperparameters"].items()
        if not isinstance(v, bool) and v and k != "eps"
    )


def results_table(columns: dict[str, list[dict] | None]) -> str:
    """A Markdown table: one row per run of the first column's records, and for each column
    (its title -> records, or None when it was not run) the final train loss and test accuracy.
    A run on an earlier run's path (:func:`twins`) says so, and where, if not in every column."""
    first = next(iter(columns.values()))
    assert first is not None
    ran = {title: records for title, records in columns.items() if records is not None}
    same = {title: twins(records) for title, records in ran.items()}
    head = ["run (optimizer: hyperparameters)"]
    for title in columns:
        head += [f"{title}: final train loss", "test accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for i, r in enumerate(first):
        name = f"{r['label']} (`{r['optimizer']}`: {hyperparameters(r)})"
        where = [title for title in ran if r["label"] in same[title]]
        if where:
            name += f", the same path as {same[where[0]][r['label']]}"
            if len(where) < len(ran):
                name += " on " + " and ".join(where) + " only"
        cells = [name]
        for records in columns.values():
            if records is None:
                cells += ["–", "–"]
            else:
                q = records[i]
                assert q["label"] == r["label"], (q["label"], r["label"])
                loss, accuracy = (nan_if_null(q[k]) for k in ("final_train_loss", "test_accuracy"))
                cells += [f"{loss:.4f}", f"{100 * accuracy:.2f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(records: list[dict], seconds: float) -> str:
    """One sentence: the wall time, and the sums of compilation and training time."""
    compile_s = sum(r["compile_seconds"] for r in records)
    train_s = sum(r["train_seconds"] for r in records)
    return (
        f"{seconds:.0f} s in all (data, compilation {compile_s:.1f} s, training {train_s:.1f} s, "
        "evaluation and figures)"
    )


def radam_rectification(record: dict) -> tuple[int, float]:
    """RAdam's last step t (steps per epoch x epochs) and its rectification factor r_t there
    (Liu et al. 2020, eq. 3; torch.optim.RAdam), at the run's b2."""
    b2 = record["hyperparameters"]["b2"]
    t = record["steps_per_epoch"] * record["epochs"]
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    r_t = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return t, float(r_t)


def spread(records: list[dict], reference: str) -> float:
    """The largest distance, in accuracy points, from the ``reference`` run's test accuracy."""
    ref = next(r for r in records if r["label"] == reference)["test_accuracy"]
    return max(abs(r["test_accuracy"] - ref) for r in records) * 100


def section(name: str, text: str) -> str:
    return f"<!-- start: {name} -->\n{text.strip()}\n<!-- end: {name} -->\n"


def machine() -> str:
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()}-core {platform.machine()} "
        f"{jax.default_backend().upper()}, jax {jax.__version__}"
    )


def include(study: dict, fashion: dict, printed: dict[str, str], demo_seconds: dict) -> str:
    """docs/_generated/mnist_results.md: one section per thing the page quotes."""
    default, default_s = study["tutorials"]
    family, family_s = study["family"]
    fashion_default = fashion.get("tutorials", (None, 0.0))[0]
    fashion_family = fashion.get("family", (None, 0.0))[0]
    radam = next(r for r in family if r["optimizer"] == "radam")
    adam = next(r for r in family if r["optimizer"] == "adam")
    t, r_t = radam_rectification(radam)
    (efold,) = [line for line in printed["convergence"].splitlines() if "per e-fold" in line]
    fashion_note = (
        "on the full Fashion-MNIST (60,000 / 10,000) the default study took "
        f"{timing(fashion_default, fashion['tutorials'][1])} and the family "
        f"{timing(fashion_family, fashion['family'][1])}"
        if fashion_default is not None and fashion_family is not None
        else "Fashion-MNIST was not found, so its columns are empty"
    )
    parts = [
        "<!-- Written by experiments/gallery.py; do not edit: run it again. -->\n",
        section(
            "machine",
            f"Measured by `python3 experiments/gallery.py` on {machine()}, one process running "
            "every study in turn (a study after the first reuses its compiled programs where "
            "they are the same).",
        ),
        section(
            "default-timing",
            f"The default study on the embedded subset took {timing(default, default_s)}.",
        ),
        section(
            "default",
            results_table(
                {"embedded MNIST 4k/1k": default, "Fashion-MNIST 60k/10k": fashion_default}
            ),
        ),
        section(
            "family-timing",
            f"The family on the embedded subset took {timing(family, family_s)}; {fashion_note}.",
        ),
        section(
            "family",
            results_table(
                {"embedded MNIST 4k/1k": family, "Fashion-MNIST 60k/10k": fashion_family}
            ),
        ),
        section(
            "family-spread",
            f"On the embedded subset every member's test accuracy is within "
            f"{spread(family, family[0]['label']):.1f} points of momentum SGD's"
            + (
                f" ({spread(fashion_family, family[0]['label']):.1f} on Fashion-MNIST)"
                if fashion_family is not None
                else ""
            )
            + ".",
        ),
        section(
            "radam",
            f"RAdam's rectification factor rₜ is still {r_t:.2f} at its last step on the "
            f"embedded subset (t = {t}, β₂ = {radam['hyperparameters']['b2']:g}); it grows "
            "with t, so it was below that at every rectified step"
            + (
                f", and it ends at train loss {radam['final_train_loss']:.4f} against Adam's "
                f"{adam['final_train_loss']:.4f}."
                if radam["final_train_loss"] > adam["final_train_loss"]
                else "."
            ),
        ),
        section("convergence", f"`convergence.py` prints: {efold.strip()}."),
        section(
            "demos",
            "The demonstrations took "
            + ", ".join(f"{s:.0f} s ({name}.py)" for name, s in demo_seconds.items())
            + ".",
        ),
    ]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs", help="where the figures go (default docs/)"
    )
    parser.add_argument(
        "--fashion-dir",
        type=str,
        default=str(FASHION_DIR),
        help=f"Fashion-MNIST's four IDX files (default {FASHION_DIR}); '' or a missing folder: "
        "no Fashion-MNIST columns",
    )
    add_compile_cache_flags(parser)
    args = parser.parse_args(argv)
    configure_compile_cache(args.compile_cache, prog="gallery.py")
    docs = args.docs
    fashion_dir = Path(args.fashion_dir) if args.fashion_dir else None
    check_writable(docs / INCLUDE.parent)  # before anything trains
    start = time.perf_counter()
    study, fashion = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, which in STUDY_FIGURES.items():
            out = Path(tmp) / which
            study[which] = run_study(which, out, ["--source", "embedded"])
            write_bytes(docs / name, (out / "loss_curves.png").read_bytes())
            print(f"wrote {docs / name}")
        if fashion_dir is not None and fashion_dir.is_dir():
            data = ["--dataset", "fashion_mnist", "--source", "idx", "--data-dir", str(fashion_dir)]
            for which in STUDY_FIGURES.values():
                fashion[which] = run_study(which, Path(tmp) / f"fashion-{which}", data)
        else:
            print(f"gallery.py: no Fashion-MNIST in {fashion_dir}: its columns stay empty")
    printed, demo_seconds = {}, {}
    for name in DEMOS:
        printed[name], demo_seconds[name] = run_demo(name, docs)
    write_text(docs / INCLUDE, include(study, fashion, printed, demo_seconds))
    print(f"wrote {docs / INCLUDE}\ngallery: {time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
