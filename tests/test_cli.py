"""Every command line: experiments/mnist.py (the study and --sweep), the demo scripts, the benchmark.

In-process where a test needs only the parser or a tiny dataset; as a subprocess where it is about
what a shell sees (exit status, one-line errors without a traceback, signals)."""

import csv
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

import jaxmom
from jaxmom import sweep as jaxmom_sweep
from jaxmom.studies.mnist import cli, registry
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.registry import OPTIMIZERS, OptimizerSpec
from jaxmom.studies.mnist.split import hold_out
from jaxmom.studies.mnist.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_dir(path, n_train=7, n_test=5):
    """Four plain IDX files of random uint8 images and labels."""
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for role, name in NAMES.items():
        a = arrays[role]
        header = bytes([0, 0, 0x08, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
        (path / name).write_bytes(header + a.tobytes())


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def one_line_exit(capsys, argv):
    """(exit status, stderr) of ``cli.main(argv)``, which must stop with one line on stderr: a bad
    flag as argparse does (``SystemExit``, status 2), any other problem by returning its status."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


# ---- experiments/mnist.py: the study ------------------------------------------------------------


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "mnist.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "case",
    [
        "bad file",
        "missing dir",
        "bad source",
        "bad optimizer",
        "flag applies to none",
        "bad value",
        "bad out",
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, case):
    write_dir(tmp_path / "d")
    bad = tmp_path / "d" / NAMES["test_images"]
    bad.write_bytes(bad.read_bytes()[:-1])
    args, fragment = {
        "bad file": (["--data-dir", str(tmp_path / "d")], f"{bad}: truncated"),
        "missing dir": (["--data-dir", str(tmp_path / "nope")], "does not exist"),
        "bad source": (["--source", "ftp"], "invalid choice: 'ftp'"),
        "bad optimizer": (["--optimizer", "sgd,lamb"], "unknown optimizer 'lamb'"),
        "flag applies to none": (
            ["--optimizer", "adam", "--rho", "0.5", "--source", "embedded"],
            "--rho applies to none",
        ),
        "bad value": (
            ["--optimizer", "sgd", "--momentum", "1.5", "--source", "embedded"],
            "momentum",
        ),
        "bad out": (["--source", "embedded", "--out", str(bad / "out")], "is not writable"),
    }[case]
    result = (
        run_cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
        if case != "bad out"
        else (run_cli(*args, cwd=tmp_path))
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and fragment in error_lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_killed_and_restarted_ends_bit_identical(embedded, tmp_path, take):
    """The CLI end to end: SIGKILL after the first checkpoint, the same command again, then its
    outputs and the final parameters against an uninterrupted in-process run."""
    command = [
        sys.executable,
        str(ROOT / "experiments" / "mnist.py"),
        "--optimizer",
        "sgd",
        "--optimizer",
        "ema_sgd",
        "--lr",
        "0.05",
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "--max-test-samples",
        "100",
        "--source",
        "embedded",
        "--out",
        "out",
        "--checkpoint-dir",
        "ck",
    ]
    first = subprocess.Popen(
        [*command, "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while first.poll() is None and not list((tmp_path / "ck").glob("*/fit-*.json")):
        time.sleep(0.002)
    first.kill()
    assert first.wait() == -signal.SIGKILL
    assert not (tmp_path / "out" / "results.json").exists()

    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "NOTICE" in result.stdout and "subset" in result.stdout
    assert result.stdout.count("epoch: 5, Train Loss: ") == 2  # both runs ended training here
    assert "epoch: 0," not in result.stdout  # epochs are numbered from 1 everywhere
    out = tmp_path / "out"
    records = json.loads((out / "results.json").read_text())["runs"]
    assert [r["optimizer"] for r in records] == ["sgd", "ema_sgd"]
    done = records[0]["resumed_from_epoch"]
    assert 1 <= done < 5  # killed in the middle of the sgd run
    assert f"resumed after epoch {done})" in result.stdout  # ... and the next line trained done+1
    sgd_lines = result.stdout.split("== sgd learning_rate=0.05 ==")[1].split("\n== ")[0]
    epochs = [line for line in sgd_lines.splitlines() if line.startswith("epoch: ")]
    assert [line.endswith("(from the checkpoint)") for line in epochs] == [
        e <= done for e in range(1, 6)
    ]
    for r in records:
        assert r["hyperparameters"]["learning_rate"] == 0.05
        assert len(r["epoch_train_loss"]) == 5 and 0 <= r["test_accuracy"] <= 1
        assert r["train_seconds"] > 0 and r["compile_seconds"] > 0
        assert (
            r["data_source"].startswith("embedded")
            and "first all train / 100 test" in (r["data_source"])
        )
        assert f"| {r['label']} | {r['optimizer']} |" in result.stdout
    with open(out / "train_loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["optimizer"], int(row["step"])) for row in rows[:2]] == [("sgd", 0), ("sgd", 30)]
    assert len(rows) == 2 * len(range(0, 1250, 30))  # 250 steps per epoch, 5 epochs
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    config = Config(
        optimizer="sgd", hparams={"learning_rate": 0.05}, epochs=5, batch_size=16, label="sgd"
    )
    whole = train_and_evaluate(config, take(embedded, 4000, 100))
    assert records[0]["epoch_train_loss"] == whole.record["epoch_train_loss"]
    assert records[0]["logged_loss"] == whole.record["logged_loss"]
    (header,) = (tmp_path / "ck").glob("sgd_learning_rate_0.05-*/fit-*.json")
    state = np.load(header.parent / json.loads(header.read_text())["file"])
    for i, a in enumerate(leaves(whole.params)):  # the state's leaves: params, then opt_state
        assert np.array_equal(a, state[f"state/{i}"][0])


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt)")
def test_debian_fashion_mnist_full_size_epoch(tmp_path):
    result = run_cli(
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(FASHION),
        "--optimizer",
        "sutskever_sgd",
        "--epochs",
        "1",
        "--out",
        "o",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    assert record["data_source"] == f"idx:{FASHION}"
    assert (record["train_examples"], record["test_examples"], record["steps_per_epoch"]) == (
        60000,
        10000,
        938,
    )
    assert record["test_accuracy"] > 0.78  # one epoch of momentum SGD on Fashion-MNIST


# ---- experiments/mnist.py --sweep ---------------------------------------------------------------


def test_sweep_writes_table_csv_heatmaps_and_results_json(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    jaxmom_sweep.clear_cache()  # compiles, whatever ran before
    argv = ["--sweep", "--lr", "0.003,0.03", "--momentum", "0,0.5,0.9", "--epochs", "1"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "sweep: sgd, Grid(learning_rate=2, momentum=3; 6 configurations)" in printed
    assert "best: learning_rate=" in printed and "momentum" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    sweep, cells = results["sweep"], results["runs"]
    assert sweep["optimizer"] == "sgd" and sweep["grid"]["momentum"] == [0.0, 0.5, 0.9]
    assert sweep["divergence_factor"] == 10
    assert len(cells) == 6
    assert all(c["train_seconds"] > 0 and c["compile_seconds"] > 0 for c in cells)
    # one schema: a sweep's cells are records with a single run's keys
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    assert cli.main(["--optimizer", "sgd", "--epochs", "1", "--out", str(tmp_path / "one")]) == 0
    (single,) = json.loads((tmp_path / "one" / "results.json").read_text())["runs"]
    assert set(single) == set(cells[0])
    assert cells[0]["hyperparameters"] == {
        "learning_rate": 0.003,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
    }
    # one vocabulary (docs/mnist.md): no duplicate names for the final loss, accuracy a fraction
    assert sweep["fixed_hyperparameters"] == {"dampening": 0.0, "weight_decay": 0.0}
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0]) == [
        "learning_rate",
        "momentum",
        "final_train_loss",
        "val_accuracy",
        "test_accuracy",
        "diverged",
        "diverged_step",
    ]
    for row, cell in zip(rows, cells):
        assert (
            float(row["test_accuracy"]) == cell["test_accuracy"] and 0 <= cell["test_accuracy"] <= 1
        )
        assert (
            float(row["final_train_loss"])
            == cell["final_train_loss"]
            == cell["epoch_train_loss"][-1]
        )
    for stem in ("train_loss", "test_accuracy"):
        assert (tmp_path / f"heatmap_{stem}_learning_rate_momentum.png").stat().st_size > 10_000


def test_sweep_of_another_optimizer_and_its_one_line_errors(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    argv = ["--sweep", "--optimizer", "adam", "--lr", "1e-3,1e-2", "--b1", "0.8,0.9"]
    assert cli.main([*argv, "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert "sweep: adam, Grid(learning_rate=2, b1=2; 4 configurations)" in capsys.readouterr().out
    assert (tmp_path / "heatmap_test_accuracy_learning_rate_b1.png").exists()
    for argv, fragment in (
        (["--optimizer", "sgd,adam", "--lr", "0.1,0.2"], "one --optimizer"),
        (["--lr", "0.1"], "needs at least one hyperparameter flag with a comma list"),
        (["--lr", "0.1,x"], "--lr: expected numbers separated by commas, got '0.1,x'"),
        (["--momentum", "0,1.5"], "momentum"),
    ):
        code, err = one_line_exit(capsys, ["--sweep", *argv, "--out", str(tmp_path / "x")])
        assert code in (1, 2) and fragment in err, err


def test_sweep_marks_exploding_runs_as_diverged_and_greys_them(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    """lr 100 does not reach NaN in one epoch but its loss grows a million-fold: diverged."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    argv = ["--sweep", "--lr", "0.01,100", "--momentum", "0.9,0.99", "--epochs", "1"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    for row in rows:
        assert row["diverged"] == (row["hyperparameters"]["learning_rate"] == 100), row
        assert (row["diverged_step"] >= 1) == row["diverged"], row
    best = json.loads((tmp_path / "results.json").read_text())["sweep"]["best"]
    assert best["learning_rate"] == 0.01
    assert cli.main([*argv, "--divergence-factor", "inf", "--out", str(tmp_path / "inf")]) == 0
    rows = json.loads((tmp_path / "inf" / "results.json").read_text())["runs"]
    finite = [r for r in rows if np.isfinite(r["final_train_loss"])]
    assert finite and not any(r["diverged"] for r in finite)  # only NaN/inf count now


def test_a_sweep_where_every_cell_diverges_draws_grey_maps_and_exits_0(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    """Issue 17.5: no finite loss to scale the colours by (the log scale failed with 'Invalid vmin
    or vmax' and no heatmap was written)."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    argv = ["--sweep", "--lr", "1e20,1e30", "--momentum", "0,0.9", "--epochs", "1", "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    assert "best: none, every configuration diverged" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert all(r["diverged"] for r in results["runs"]) and results["sweep"]["best"] is None
    for stem in ("train_loss", "test_accuracy"):
        assert (tmp_path / f"heatmap_{stem}_learning_rate_momentum.png").stat().st_size > 5_000


@pytest.mark.parametrize("search", ["random", "halving", "pbt"])
def test_a_search_where_every_trial_diverges_draws_grey_scatter_plots_and_exits_0(
    search, tmp_path, monkeypatch, capsys, tiny_mnist
):
    """Issue 25.10: results.json was written, then the scatter plot of the one hyperparameter died
    ('Data cannot be log-scaled because all values are <= 0': nothing on its log axis)."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    argv = ["--search", search, "--trials", "3", "--lr", "1e4:1e6", "--epochs", "3", "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    assert "best: none, every configuration diverged" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert all(r["diverged"] for r in results["runs"]) and results["sweep"]["best"] is None
    for stem in ("train_loss", "test_accuracy"):
        assert (tmp_path / f"scatter_{stem}_learning_rate.png").stat().st_size > 5_000
    if search == "halving":  # each run records the accuracy of the last epoch it trained
        assert all("test_accuracy_at_stop" in r for r in results["runs"])
    if search == "pbt":  # every member diverged: none is drawn as the best
        assert (tmp_path / "pbt_schedules.png").stat().st_size > 5_000


# ---- the registry makes the command line --------------------------------------------------------


def toy(learning_rate, betas=(0.0, 0.9), warmup_steps=10, *, nesterov=False):
    """SGD with momentum mean(betas) and learning rate / warmup_steps: an array and an integer
    hyperparameter, concrete or traced."""
    return jaxmom.sgd(learning_rate / warmup_steps, jnp.mean(jnp.asarray(betas)), nesterov=nesterov)


def test_one_registry_entry_adds_an_optimizer_with_array_and_integer_hyperparameters(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    spec = OptimizerSpec(
        "toy",
        toy,
        overrides={"learning_rate": 0.1},  # betas and warmup_steps: toy's signature
        options={"nesterov": "Nesterov momentum"},
        help={"betas": "momentum terms, averaged", "warmup_steps": "divides the learning rate"},
    )
    monkeypatch.setattr(registry, "OPTIMIZERS", registry.registry(*OPTIMIZERS.values(), spec))
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    text = " ".join(cli.build_parser().format_help().split())
    assert "qhadam, aggmo, schedule_free_sgd, toy." in text
    # betas and warmup_steps already have their help (from aggmo, schedule_free_sgd)
    assert "--betas X damping of each of AggMo's K velocities (aggmo, toy); an array" in text
    assert "--warmup-steps N linear learning-rate warmup, in steps (schedule_free_sgd, toy)" in text
    assert "--nesterov Nesterov momentum (sgd, sutskever_sgd, toy)" in text
    assert "toy lr=0.1 betas=0,0.9 warmup-steps=10 [--nesterov]" in text

    argv = ["--optimizer", "toy", "--betas", "0,0.5", "--warmup-steps", "4", "--epochs", "1"]
    assert cli.main([*argv, "--quiet", "--out", str(tmp_path / "run")]) == 0
    (record,) = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    assert record["hyperparameters"]["betas"] == [0.0, 0.5]
    assert record["hyperparameters"]["warmup_steps"] == 4
    argv = ["--sweep", "--optimizer", "toy", "--warmup-steps", "2,4", "--betas", "0,0.5"]
    argv += ["--validation", "0"]  # every training image, as the single run: the same cell
    assert cli.main([*argv, "--epochs", "1", "--out", str(tmp_path / "grid")]) == 0
    sweep = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert sweep["sweep"]["grid"] == {"warmup_steps": [2, 4]}
    assert sweep["sweep"]["fixed_hyperparameters"]["betas"] == [0.0, 0.5]
    (one,) = [r for r in sweep["runs"] if r["hyperparameters"]["warmup_steps"] == 4]
    assert one["final_train_loss"] == pytest.approx(record["final_train_loss"], rel=1e-5)
    capsys.readouterr()  # fit's progress bar
    code, err = one_line_exit(capsys, ["--optimizer", "toy", "--warmup-steps", "2.5"])
    assert code == 2 and "expected integers separated by commas" in err


# ---- experiments/mnist.py: mistakes a user makes ----------------------------------------------------


def test_a_comma_list_without_sweep_says_to_add_sweep(capsys):
    code, err = one_line_exit(capsys, ["--lr", "1e-3,1e-2"])
    assert code == 2 and "add --sweep" in err and "invalid float" not in err


def test_checkpoint_dir_that_is_a_file_stops_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_data", lambda args: pytest.fail("loaded data"))
    (tmp_path / "file").write_text("")
    code, err = one_line_exit(capsys, ["--checkpoint-dir", str(tmp_path / "file")])
    assert code == 2 and "is a file, not a folder" in err
    argv = ["--checkpoint-dir", str(tmp_path / "file" / "sub"), "--out", str(tmp_path / "o")]
    code, err = one_line_exit(capsys, argv)
    assert code == 1 and "--checkpoint-dir: output folder" in err and "not writable" in err


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt)")
def test_fashion_mnist_files_given_as_mnist_are_refused(tmp_path, capsys):
    argv = ["--dataset", "mnist", "--data-dir", str(FASHION), "--out", str(tmp_path / "o")]
    code, err = one_line_exit(capsys, argv)
    assert code == 1 and "Fashion-MNIST labels" in err and "'fashion_mnist'" in err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    # The script runs with Python's own SIGINT handler even where this test runs with SIGINT
    # ignored (a shell's background job ignores it, and a child process inherits that).
    launcher = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    command = [sys.executable, "-c", launcher, str(ROOT / "experiments" / "mnist.py")]
    command += ["--source", "embedded"]
    command += ["--optimizer", "sgd", "--epochs", "50", "--out", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert run.stdout is not None
    for line in run.stdout:  # wait until main() runs
        if line.startswith("data:"):
            break
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == "mnist.py: interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no --out, nothing beside it


def test_ctrl_c_that_a_gc_callback_swallows_still_stops_the_run_within_an_epoch(
    tmp_path, capsys, monkeypatch, tiny_mnist
):
    """SIGINT lands while a garbage-collection callback runs (as JAX's _xla_gc_callback), where
    Python prints "Exception ignored in ..." and drops the KeyboardInterrupt: the run trained on to
    its end and exited 0. Now it stops after the epoch it was in (whose checkpoint is saved), with
    the one line and status 130. Deterministic: the callback sends the signal itself, and runs
    until Python's handler has raised inside it."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    landed = []

    def callback(phase, info):
        gc.callbacks.remove(callback)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # Python runs the signal's handler here
                pass
        except KeyboardInterrupt:
            landed.append(True)
            raise  # ignored by gc

    def train(*args, **kwargs):
        gc.callbacks.append(callback)
        gc.collect()
        return train_and_evaluate(*args, **kwargs)

    monkeypatch.setattr(cli, "train_and_evaluate", train)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even in a background job
    try:
        argv = quick(tmp_path / "o", "--epochs", "5", "--checkpoint-dir", str(tmp_path / "ck"))
        code = cli.main(argv)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert landed == [True]
    assert code == 130 and capsys.readouterr().err == "mnist.py: interrupted\n"
    (header,) = (tmp_path / "ck").glob("*/fit-*.json")
    assert json.loads(header.read_text())["epoch"] == 1  # stopped after the first epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no --out


def test_ctrl_c_while_jax_imports_exits_130_with_one_line(tmp_path):
    """SIGINT arrives while the script imports jax (delivered by an import hook, so the test does
    not depend on timing): one line, status 130, no traceback."""
    launcher = (
        "import os, runpy, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jax':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    script = str(ROOT / "experiments" / "mnist.py")
    run = subprocess.run(
        [sys.executable, "-c", launcher, script, "--source", "embedded", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 130, run.stderr
    assert run.stderr == "mnist.py: interrupted\n" and run.stdout == ""


@pytest.mark.parametrize(
    "argv, code, fragment",
    [
        (["--optimizer", ""], 2, "--optimizer: expected optimizer names, got ''"),
        (["--optimizer", " , "], 2, "--optimizer: expected optimizer names"),
        (["--optimizer", "aggmo", "--betas", ","], 2, "--betas: expected a value, got ','"),
        (
            ["--optimizer", "schedule_free_sgd", "--warmup-steps", "3000000000"],
            2,
            "warmup_steps is fed to the optimizer as int32: it must be an integer in "
            "[-2147483648, 2147483647], got 3000000000",
        ),
        (
            ["--sweep", "--optimizer", "schedule_free_sgd", "--warmup-steps", "1,3000000000"],
            2,
            "grid cell warmup_steps=3000000000: warmup_steps is fed to the optimizer as int32",
        ),
        (["--seed", "4294967296"], 2, "seed must be an integer in [0, 2147483647]"),
        (["--sweep", "--lr", "0.1,0.2", "--seed", "4294967296"], 2, "in [0, 2147483647]"),
        (["--seed", "2147483648"], 2, "seed must be an integer in [0, 2147483647]"),
        (["--epochs", "3000000000"], 2, "epochs must be an integer in [1, 2147483647]"),
        (
            ["--sweep", "--lr", "0.1,0.2", "--momentum", "0.5,1.0"],
            2,
            "grid cell learning_rate=0.1, momentum=1.0: momentum must be",
        ),
        (["--sweep", "--lr", "0.1,-0.1"], 2, "grid cell learning_rate=-0.1: learning_rate must"),
        (["--momentum", "-0.5"], 2, "momentum must be a finite number in [0, 1), got -0.5"),
        (["--sweep", "--lr", "-0.1,0.1"], 2, "learning_rate must be a finite number in [0, inf)"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_names_integers_and_grid_cells_are_one_line_before_any_data_or_training(
    argv, code, fragment, capsys, monkeypatch, tmp_path
):
    """Integers are exact or refused with their range (a seed of 2**32 would repeat seed 0, 3e9
    warm-up steps would wrap in int32); every cell of a grid is checked as a single run is. A bad
    command line, its values included, exits with status 2 (argparse's)."""
    monkeypatch.setattr(cli, "load_data", lambda args: pytest.fail("loaded data"))
    got, err = one_line_exit(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert got == code and fragment in err, err
    assert not (tmp_path / "o").exists()


# ---- outputs: checked before training, written whole, never silently replaced ----------------


@pytest.mark.parametrize("sweep", [False, True], ids=["study", "sweep"])
def test_an_unwritable_out_is_one_line_before_anything_compiles(
    sweep, capsys, monkeypatch, tiny_mnist
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    monkeypatch.setattr(cli, "train_and_evaluate", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(cli, "run_sweep", lambda *a, **k: pytest.fail("trained"))
    argv = ["--sweep", "--lr", "0.1,0.2"] if sweep else ["--optimizer", "sgd"]
    code, err = one_line_exit(capsys, [*argv, "--out", "/proc/self/out"])
    assert code == 1 and "--out: output folder /proc/self/out is not writable" in err, err


def quick(out, *extra):
    return ["--optimizer", "sgd", "--epochs", "1", "--quiet", "--out", str(out), *extra]


def test_an_out_with_results_is_refused_unless_overwrite(tmp_path, capsys, monkeypatch, tiny_mnist):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "o"
    assert cli.main(quick(out)) == 0
    first = (out / "results.json").read_bytes()
    capsys.readouterr()
    for argv in (quick(out, "--lr", "0.5"), ["--sweep", "--lr", "0.1,0.2", "--out", str(out)]):
        code, err = one_line_exit(capsys, argv)
        assert code == 2 and "already holds results (results.json)" in err, err
        assert "pass --overwrite" in err
    assert (out / "results.json").read_bytes() == first
    assert cli.main(quick(out, "--lr", "0.5", "--overwrite")) == 0
    assert (
        json.loads((out / "results.json").read_text())["runs"][0]["hyperparameters"][
            "learning_rate"
        ]
        == 0.5
    )


def no_space(fd):
    raise OSError(28, "No space left on device")


def first_run(sweep, tmp_path, capsys, monkeypatch, tiny_mnist):
    """A study (or a sweep) run into ``tmp_path/o``: (its folder, its argv, its files' bytes)."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "o"
    argv = ["--sweep", "--lr", "0.1,0.2", "--epochs", "1", "--quiet", "--out", str(out)]
    argv = argv if sweep else quick(out)
    assert cli.main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    return out, argv, before


@pytest.mark.parametrize("sweep", [False, True], ids=["study", "sweep"])
def test_a_full_disk_at_write_is_one_line_and_keeps_the_earlier_results(
    sweep, tmp_path, capsys, monkeypatch, tiny_mnist
):
    """The disk fills up when the second run writes (every write's fsync fails): one line naming
    the file, status 1, the first run's files byte for byte, and no temporary file."""
    out, argv, before = first_run(sweep, tmp_path, capsys, monkeypatch, tiny_mnist)
    monkeypatch.setattr(os, "fsync", no_space)
    assert cli.main([*argv, "--overwrite", "--lr", "0.3,0.4" if sweep else "0.3"]) == 1
    err = capsys.readouterr().err
    first = "sweep.csv" if sweep else "results.json"
    assert err == f"mnist.py: error: cannot write {out / first}: No space left on device\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.iterdir()) == [out]  # no half-written run beside it


@pytest.mark.parametrize("sweep", [False, True], ids=["study", "sweep"])
def test_a_disk_that_fills_up_mid_write_keeps_the_earlier_run_whole(
    sweep, tmp_path, capsys, monkeypatch, tiny_mnist
):
    """--overwrite, and the disk fills up after the new run's first file was written: --out
    still holds the earlier run, every file of it byte for byte (it held the new results.json
    beside the old figures), and nothing of the new run is left anywhere."""
    out, argv, before = first_run(sweep, tmp_path, capsys, monkeypatch, tiny_mnist)
    writes = []

    def fills_up(fd):  # the first file is written, the second finds the disk full
        writes.append(fd)
        if len(writes) > 1:
            no_space(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    assert cli.main([*argv, "--overwrite", "--lr", "0.3,0.4" if sweep else "0.3"]) == 1
    second = "results.json" if sweep else "train_loss.csv"
    assert capsys.readouterr().err == (
        f"mnist.py: error: cannot write {out / second}: No space left on device\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.iterdir()) == [out]


def written(out) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_overwrite_replaces_the_whole_earlier_run(tmp_path, capsys, monkeypatch, tiny_mnist):
    """A --search, then --overwrite with a --sweep, then with a single run: each time --out holds
    the new run's files and none of the earlier one's (the search's sweep.csv and scatter plots
    stayed beside the sweep's results)."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "o"
    common = ["--epochs", "1", "--quiet", "--out", str(out)]
    search = ["--search", "random", "--trials", "2", "--lr", "1e-3:1", "--momentum", "0:0.9"]
    assert cli.main([*search, *common]) == 0
    assert {"results.json", "sweep.csv", "scatter_test_accuracy_learning_rate_momentum.png"} <= (
        written(out)
    )
    sweep = ["--sweep", "--lr", "0.1,0.2", "--momentum", "0,0.9"]
    assert cli.main([*sweep, *common, "--overwrite"]) == 0
    assert written(out) == {
        "results.json",
        "sweep.csv",
        "heatmap_train_loss_learning_rate_momentum.png",
        "heatmap_val_accuracy_learning_rate_momentum.png",
        "heatmap_test_accuracy_learning_rate_momentum.png",
    }
    assert cli.main(["--optimizer", "sgd", *common, "--overwrite"]) == 0
    assert written(out) == {"results.json", "train_loss.csv", "loss_curves.png"}
    assert list(tmp_path.iterdir()) == [out]
    printed = capsys.readouterr().out
    assert f"wrote {out / 'loss_curves.png'}" in printed and ".tmp-" not in printed


def test_a_swap_that_fails_puts_the_earlier_run_back(tmp_path, capsys, monkeypatch, tiny_mnist):
    """The new run is complete and the earlier one renamed aside, but renaming the new one in
    fails: the earlier run is renamed back, byte for byte, and the new one removed."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "o"
    assert cli.main(quick(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rename, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(18, "Invalid cross-device link")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", second_fails)
    code, err = one_line_exit(capsys, quick(out, "--overwrite", "--lr", "0.3"))
    assert (
        code == 1
        and err == f"mnist.py: error: --out: cannot replace {out}: Invalid cross-device link\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.iterdir()) == [out]


def test_an_out_that_gains_a_file_of_yours_meanwhile_is_left_alone(
    tmp_path, capsys, monkeypatch, tiny_mnist
):
    """A file put into --out while the run trained is never deleted: --out stays as it is, and
    the finished run stays beside it, where the one line says."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "o"
    assert cli.main(quick(out)) == 0
    capsys.readouterr()

    def train(*args, **kwargs):
        (out / "notes.txt").write_text("mine")
        return train_and_evaluate(*args, **kwargs)

    monkeypatch.setattr(cli, "train_and_evaluate", train)
    code, err = one_line_exit(capsys, quick(out, "--overwrite"))
    (kept,) = set(tmp_path.iterdir()) - {out}
    assert code == 1 and "now holds notes.txt, which this run may not replace" in err, err
    assert err.endswith(f"this run's files are in {kept}\n") and kept.name.startswith("o.tmp-")
    assert (out / "notes.txt").read_text() == "mine" and (kept / "results.json").exists()


def test_a_run_that_fails_creates_no_out_folder(tmp_path, capsys, monkeypatch, tiny_mnist):
    """Every check of the command line passes and the run then fails (here in training): no --out,
    no folder beside it, and none of the parents it would have made."""
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)

    def fails(*args, **kwargs):
        raise ValueError("the training failed")

    monkeypatch.setattr(cli, "train_and_evaluate", fails)
    code, err = one_line_exit(capsys, quick(tmp_path / "a" / "b" / "o"))
    assert code == 1 and err == "mnist.py: error: the training failed\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["a file of yours", "a subfolder", "the current folder"])
def test_an_out_that_holds_what_the_study_did_not_write_is_refused(
    case, tmp_path, capsys, monkeypatch
):
    """A run replaces its --out folder whole, so a folder with anything but a run's files in it
    (or the current folder) is refused, --overwrite or not, and left as it was."""
    monkeypatch.setattr(cli, "load_data", lambda args: pytest.fail("loaded data"))
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    if case == "a file of yours":
        (out / "notes.txt").write_text("mine")
        fragment = "holds notes.txt, which the study did not write"
    elif case == "a subfolder":
        (out / "heatmap_x.png").mkdir()
        fragment = "holds heatmap_x.png, which the study did not write"
    else:
        monkeypatch.chdir(out)
        out, fragment = Path("."), "--out '.' is the current folder"
    before = sorted(tmp_path.rglob("*"))
    for extra in ([], ["--overwrite"]):
        code, err = one_line_exit(capsys, quick(out, *extra))
        assert code == 2 and fragment in err, err
    assert sorted(tmp_path.rglob("*")) == before
    argv = quick(tmp_path / "n", "--checkpoint-dir", str(tmp_path / "n" / "ck"))
    code, err = one_line_exit(capsys, argv)
    assert code == 2 and "--checkpoint-dir lies inside --out" in err, err


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_temporary_file(
    tmp_path, capsys, monkeypatch, tiny_mnist
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    monkeypatch.setattr(os, "fsync", no_space)
    ck = tmp_path / "ck"
    assert cli.main(quick(tmp_path / "o", "--checkpoint-dir", str(ck))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mnist.py: error: cannot write {ck}/sgd-") and err.count("\n") == 1
    assert err.endswith(".npz: No space left on device\n")
    (folder,) = ck.iterdir()  # the run's folder, with no file: no temporary one either
    assert list(folder.iterdir()) == []


# ---- the demo scripts and the benchmark ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, figures",
    [
        ("ema", ["ema.png"]),
        ("quadratic", ["quadratic.png"]),
        ("regression", ["regression.png", "regression_optimizers.png"]),
        ("convergence", ["convergence.png"]),
    ],
)
def test_demo_script_writes_its_figures_and_reports_numbers(
    name, figures, tmp_path, capsys, load_script
):
    load_script(name).main(["--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    for figure in figures:
        image = matplotlib.image.imread(tmp_path / "out" / figure)
        assert image.shape[0] > 400 and image.shape[1] > 400
        assert f"wrote {tmp_path / 'out' / figure}" in printed
    assert sum(c.isdigit() for c in printed) > 50  # numbers, not just 'saved'


def test_demo_script_bad_out_is_one_line_on_stderr(tmp_path, capsys, load_script):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        load_script("quadratic").main(["--out", str(blocker / "sub")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create --out folder") and err.count("\n") == 1


def test_demo_script_unknown_option_exits_with_usage(capsys, load_script):
    with pytest.raises(SystemExit) as exit_info:
        load_script("ema").main(["--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_the_script_loader_leaves_sys_path_and_sys_modules_as_it_found_them(load_script):
    import jaxmom.studies.tutorials  # noqa: F401  (imported by the script; may stay loaded)

    path, modules = list(sys.path), set(sys.modules)
    module = load_script("quadratic")  # imports its neighbour _plotting
    assert callable(module.main) and module.save.__module__ == "_plotting"
    assert sys.path == path and set(sys.modules) - modules == set()


def test_benchmark_quick_run_writes_every_row(tmp_path, load_script):
    benchmark = load_script("benchmark")

    assert (
        benchmark.main(
            ["--quick", "--samples", "128", "--no-torch", "--out", str(tmp_path / "b.json")]
        )
        == 0
    )
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {r["row"]: r for r in report["rows"]}
    peers = {b for (a, b) in benchmark.TARGETS if not b.startswith("pytorch")}
    assert {benchmark.EPOCH, benchmark.SWEEP, *peers} <= set(rows)
    assert all(r["seconds"] > 0 and r["compile_seconds"] >= 0 for r in rows.values())
    assert rows[benchmark.SWEEP]["configs"] == 16 and report["steps"] == 2
    assert 0 < rows[benchmark.SWEEP]["eval_seconds"] < rows[benchmark.SWEEP]["seconds"]
    assert rows["part: jaxmom.sgd update alone, 16 configs"]["gbytes_per_s"] > 0
    assert len(report["speedups"]) == 3  # no PyTorch row: its ratio is left out


def test_benchmark_cold_rows_time_fresh_processes_with_the_cache_off_empty_and_filled(
    load_script,
):
    """``--cold``'s rows, on a tiny study: mnist.py in three fresh processes; the one with the
    cache filled by the empty one loads its programs instead of compiling them."""
    benchmark = load_script("benchmark")
    tiny = ["--source", "embedded", "--max-train-samples", "64", "--max-test-samples", "10"]
    tiny += ["--epochs", "1"]
    rows = benchmark.cold_rows(tiny, {"tiny study": ["--optimizer", "sgd"]})
    assert [r["row"] for r in rows] == [
        f"tiny study (compile cache {s})" for s in benchmark.CACHE_STATES
    ]
    off, empty, filled = rows
    assert all(r["fresh_process"] and r["configs"] == 1 and r["seconds"] > 0 for r in rows)
    assert filled["compile_seconds"] < empty["compile_seconds"] / 2, rows


def test_the_study_keeps_its_programs_in_the_cache_folder_it_is_given(tmp_path):
    tiny = ["--source", "embedded", "--max-train-samples", "64", "--max-test-samples", "10"]
    tiny += ["--epochs", "1", "--optimizer", "sgd", "--quiet"]
    out = run_cli(
        *tiny, "--compile-cache", str(tmp_path / "c"), "--out", str(tmp_path / "1"), cwd=tmp_path
    )
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    assert (
        list((tmp_path / "c").glob("*-cache")) and (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    )
    (tmp_path / "file").write_text("")
    out = run_cli(
        *tiny, "--compile-cache", str(tmp_path / "file"), "--out", str(tmp_path / "2"), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"mnist.py: warning: compile cache off: {tmp_path / 'file'} is not a folder"
    ]


def test_param_and_state_dtype_flags_reach_single_runs_and_sweeps(
    tmp_path, monkeypatch, capsys, tiny_mnist
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    dtypes = ["--param-dtype", "bfloat16", "--state-dtype", "float32"]
    common = ["--optimizer", "adam", "--epochs", "1", "--quiet", *dtypes]
    assert cli.main([*common, "--out", str(tmp_path / "one")]) == 0
    [record] = json.loads((tmp_path / "one" / "results.json").read_text())["runs"]
    assert (record["param_dtype"], record["state_dtype"]) == ("bfloat16", "float32")
    plain = train_and_evaluate(Config(optimizer="adam", epochs=1), tiny_mnist).record
    assert (
        plain["state_dtype"] == "float32"
        and plain["epoch_train_loss"] != record["epoch_train_loss"]
    )
    assert cli.main([*common, "--sweep", "--lr", "0.001,0.01", "--out", str(tmp_path / "g")]) == 0
    cells = json.loads((tmp_path / "g" / "results.json").read_text())["runs"]
    assert [(c["param_dtype"], c["state_dtype"]) for c in cells] == [("bfloat16", "float32")] * 2
    assert cells[0]["epoch_train_loss"] == pytest.approx(record["epoch_train_loss"], rel=1e-2)
    capsys.readouterr()
    code, err = one_line_exit(capsys, ["--state-dtype", "float16", "--source", "embedded"])
    assert code == 2 and "invalid choice: 'float16'" in err


@pytest.mark.slow  # twelve one-epoch runs: about 15 s on 2 cores
def test_mixed_precision_script_writes_its_table_into_the_page(
    tmp_path, monkeypatch, tiny_mnist, load_script
):
    script = load_script("mixed_precision")
    monkeypatch.setattr(script.data, "load", lambda *args, **kwargs: tiny_mnist)
    page = tmp_path / "mnist.md"
    page.write_text(f"before\n{script.START}\nold\n{script.END}\nafter\n")
    monkeypatch.setattr(script, "DOCS", page)
    script.main(["--epochs", "1", "--repeats", "1", "--out", str(tmp_path / "out"), "--docs"])
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == 6 and {r["setting"] for r in rows} == set(script.SETTINGS)
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert text.count("| adam 1e-3 |") == 3 and "| 1.00x |" in text


# ---- --search and --seeds (issue 19) ------------------------------------------------------------

SEARCH = ["--search", "random", "--lr", "1e-4:1"]
PBT = ["--search", "pbt", "--lr", "1e-4:1"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["--optimizer", "aggmo", "--betas", "0:1", *SEARCH],
            "but this hyperparameter is an array",
        ),
        (
            ["--epochs", "1:5", *SEARCH],
            "'1:5' is a range, but this flag is fixed for the whole run",
        ),
        (["--seed", "0:3", *SEARCH], "--seed: '0:3' is a range, but this flag is fixed"),
        (
            ["--optimizer", "schedule_free_sgd", "--warmup-steps", "0:10", *SEARCH],
            "is an integer: ranges LO:HI are for float hyperparameter flags",
        ),
        (["--lr", "1e-4:x", *SEARCH[:2]], "expected a range LO:HI of two numbers, got '1e-4:x'"),
        (
            ["--lr", "1e-4:1"],
            "--lr 0.0001:1 is a range: add --search random|sobol|halving|pbt|optuna",
        ),
        (["--search", "sobol", "--lr", "0.1"], "--search sobol needs at least one range LO:HI"),
        (["--search", "halving", "--lr", "0.1,0.2"], "needs at least one range"),
        ([*SEARCH, "--trials", "0"], "--trials must be in 1..1048576 (the most one search"),
        (["--search", "halving", "--lr", "1e-4:1", "--eta", "1"], "--eta must be at least 2"),
        ([*SEARCH, "--eta", "3"], "--eta applies to --search halving"),
        (["--lr", "0.1", "--trials", "3"], "--trials applies to --search"),
        (["--search", "random", "--lr", "0:1"], "--lr 0:1: a range needs 0 < LO < HI"),
        ([*SEARCH, "--momentum", "0.9:0.1"], "--momentum 0.9:0.1: a range needs LO < HI"),
        (
            [*SEARCH, "--momentum", "0:1.5"],
            "--momentum 0:1.5: momentum must be a finite number in [0, 1), got 1.5",
        ),
        ([*SEARCH, "--momentum", "0,1.5"], "--momentum 0,1.5: momentum must be a finite number"),
        (
            ["--search", "random", "--lr", "1e-4:inf"],
            "--lr 0.0001:inf: a range needs two finite numbers LO < HI",
        ),
        (["--search", "random", "--lr", "1e-50:1"], "--lr 1e-50:1: LO value 1e-50 is below"),
        (["--search", "random", "--lr", "-1:1"], "--lr -1:1: a range needs 0 < LO < HI"),
        (["--search", "random", "--lr=-1:1"], "--lr -1:1: a range needs 0 < LO < HI"),
        ([*SEARCH, "--momentum", "-0.5:0.5"], "--momentum -0.5:0.5: momentum must be"),
        (
            [*SEARCH, "--trials", "1099511627776"],
            "--trials must be in 1..1048576 (the most one search draws), got 1099511627776",
        ),
        (
            [*SEARCH, "--divergence-factor", "1"],
            "--divergence-factor must be a number above 1, or inf (only NaN and inf diverge), "
            "got 1",
        ),
        (["--sweep", "--lr", "0.1,0.2", "--divergence-factor", "nan"], "got nan"),
        (["--divergence-factor", "0.5"], "--divergence-factor must be a number above 1"),
        ([*SEARCH, "--sweep"], "give one of them"),
        ([*SEARCH, "--study", "family"], "--study trains a fixed list"),
        ([*SEARCH, "--optimizer", "sgd,adam"], "--search trains one --optimizer at a time"),
        (["--optimizer", "adam", "--momentum", "0:0.9", *SEARCH], "--momentum applies to none"),
        (["--seeds", "0,1"], "--seeds makes a seed axis of a --sweep or --search"),
        (["--sweep", "--lr", "0.1,0.2", "--seeds", "0,1,0"], "--seeds lists seed 0 more than once"),
        (["--sweep", "--lr", "0.1,0.2", "--seeds", "0,-1"], "--seeds: seed must be an integer"),
        (
            ["--search", "halving", "--lr", "1e-4:1", "--checkpoint-dir", "ck"],
            "--checkpoint-dir does not apply to --search halving",
        ),
        ([*PBT, "--interval", "0"], "--interval must be at least 1 (epochs between two exploits)"),
        (
            [*PBT, "--fraction", "0.7"],
            "--fraction must be in (0, 0.5] (the bottom F copy the top F)",
        ),
        ([*SEARCH, "--interval", "2"], "--interval applies to --search pbt"),
        (["--sweep", "--lr", "0.1,0.2", "--fraction", "0.2"], "--fraction applies to --search pbt"),
        ([*PBT, "--epochs", "3", "--interval", "3"], "--interval 3 leaves no exploit in 3 epochs"),
        ([*PBT, "--trials", "1"], "--search pbt needs a population of at least 2 --trials"),
    ],
)
def test_search_flag_errors_are_one_line_before_any_data(
    argv, fragment, capsys, monkeypatch, tmp_path
):
    """Each names its flag and value in the command line's words (not log_uniform(), not a grid
    cell, not argparse's "expected one argument" for a value that starts with a minus); a number
    of trials beyond what a search draws, or a divergence factor that fit refuses, is refused
    here too, before any data or any folder (it was an 8 TiB allocation, or exit 1 after the data
    loaded, beside an empty --out)."""
    monkeypatch.setattr(cli, "load_data", lambda args: pytest.fail("loaded data"))
    code, err = one_line_exit(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert code == 2 and fragment in err, err
    assert "log_uniform" not in err and "grid cell" not in err and "expected one" not in err
    assert list(tmp_path.iterdir()) == []


def test_search_optuna_without_optuna_names_the_tune_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "load_data", lambda args: pytest.fail("loaded data"))
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna: ImportError
    code, err = one_line_exit(capsys, ["--search", "optuna", "--lr", "1e-4:1"])
    assert code == 2 and "--search optuna needs Optuna" in err and "jaxmom[tune]" in err, err


def search_results(tmp_path, monkeypatch, tiny_mnist, *argv):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "out"
    assert cli.main([*argv, "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    return out, results["sweep"], results["runs"], rows


def test_search_sobol_with_seeds_trains_the_drawn_trials_and_ranks_by_seed_means(
    tmp_path, monkeypatch, tiny_mnist
):
    argv = ["--search", "sobol", "--trials", "4", "--lr", "1e-3:1", "--momentum", "0:0.99"]
    out, sweep, runs, rows = search_results(
        tmp_path, monkeypatch, tiny_mnist, *argv, "--seeds", "3,5"
    )
    assert sweep["search"]["method"] == "sobol" and len(runs) == len(rows) == 8
    assert sweep["search"]["space"] == {
        "learning_rate": "log-uniform 0.001..1",
        "momentum": "uniform 0..0.99",
    }
    lrs = [r["hyperparameters"]["learning_rate"] for r in runs]
    assert [r["seed"] for r in runs] == [3, 5] * 4 and lrs[::2] == lrs[1::2]
    assert all(1e-3 <= lr < 1 and 0 <= r["hyperparameters"]["momentum"] < 0.99 for r, lr in
               zip(runs, lrs))  # fmt: skip
    # Sobol: one trial in each quarter of the log range
    quarters = sorted(int(4 * np.log(lr / 1e-3) / np.log(1e3)) for lr in lrs[::2])
    assert quarters == [0, 1, 2, 3]
    # a trial's cell is that configuration trained alone
    h = runs[1]["hyperparameters"]
    alone = train_and_evaluate(
        Config(
            hparams={"learning_rate": h["learning_rate"], "momentum": h["momentum"]},
            epochs=1,
            seed=5,
        ),
        hold_out(tiny_mnist),  # a search's default split: the last tenth held out
    ).record
    np.testing.assert_allclose(alone["epoch_train_loss"], runs[1]["epoch_train_loss"], rtol=1e-5)
    # the best is the highest mean over the two seeds, not one lucky seed
    means = [(runs[i]["val_accuracy"] + runs[i + 1]["val_accuracy"]) / 2 for i in range(0, 8, 2)]
    best = sweep["best"]
    assert best["n_seeds"] == 2 and best["val_accuracy"] == pytest.approx(max(means))
    assert best["learning_rate"] == lrs[2 * int(np.argmax(means))]
    for stem in ("train_loss", "test_accuracy"):
        assert (out / f"scatter_{stem}_learning_rate_momentum.png").stat().st_size > 10_000
    assert not list(out.glob("heatmap_*.png"))


def test_search_halving_keeps_the_best_third_by_validation_accuracy(
    tmp_path, monkeypatch, tiny_mnist
):
    from jaxmom.sweep import plot

    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    titles, scatter = [], plot.scatter

    def seen(*args, **kwargs):
        fig = scatter(*args, **kwargs)
        titles.append(fig.axes[0].get_title())
        return fig

    monkeypatch.setattr(plot, "scatter", seen)
    out = tmp_path / "out"
    argv = ["--search", "halving", "--trials", "9", "--eta", "3", "--lr", "1e-3:1"]
    assert cli.main([*argv, "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    runs, halving = results["runs"], results["sweep"]["halving"]
    after_one = [r["epoch_val_accuracy"][0] for r in runs]  # selected on validation, not test
    kept = [r["epochs_trained"] == 3 for r in runs]
    assert results["sweep"]["selected_on"] == "val_accuracy"
    assert all(r["validation_examples"] == 19 and r["train_examples"] == 173 for r in runs)
    assert sum(kept) == 3 and [r["epochs_trained"] for r in runs].count(1) == 6
    # the survivors are the three best after the first epoch (ties aside)
    assert min(a for a, k in zip(after_one, kept) if k) >= max(
        a for a, k in zip(after_one, kept) if not k
    )
    assert halving["config_epochs"] == 6 * 1 + 3 * 3 and halving["full_config_epochs"] == 27
    assert all(r["test_accuracy"] is None for r, k in zip(runs, kept) if not k)  # NaN: null
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"epochs_trained", "val_accuracy_at_stop", "test_accuracy_at_stop"} <= set(rows[0])
    for row, run in zip(rows, runs):  # every trial's score where it stopped, none empty
        assert float(row["val_accuracy_at_stop"]) == pytest.approx(
            run["epoch_val_accuracy"][run["epochs_trained"] - 1]
        )
    # one hyperparameter: the scatter is the metric against it, every trial drawn (the six
    # stopped ones faded, at their value at stop), its title saying it is a halving run
    assert (out / "scatter_test_accuracy_learning_rate.png").stat().st_size > 10_000
    assert any("successive halving: 9 trials, 3 trained to the end" in t for t in titles), titles


def test_search_pbt_writes_the_lineages_the_schedules_figure_and_the_pick(
    tmp_path, monkeypatch, tiny_mnist, capsys
):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "out"
    argv = ["--search", "pbt", "--trials", "4", "--lr", "1e-3:1", "--momentum", "0:0.9"]
    argv += ["--seeds", "0,1", "--fraction", "0.25", "--epochs", "3", "--quiet"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    runs, sweep = results["runs"], results["sweep"]
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert "search: pbt (interval 1, fraction 0.25, ranked by validation accuracy), 4 trials" in (
        printed
    )
    assert "pbt: 4 members, 2 exploits (after epochs 1, 2), 2 copies" in printed
    search, pbt = sweep["search"], sweep["pbt"]
    assert search["method"] == "pbt" and search["metric"] == "val_accuracy"
    assert (search["interval"], search["fraction"], search["mode"]) == (1, 0.25, "max")
    assert pbt["members"] == 4 and pbt["ends"] == [1, 2, 3]
    assert [len(c) for c in pbt["copies"]] == [1, 1]  # a quarter of 4: one member copies
    assert len(runs) == len(rows) == 8 and [r["seed"] for r in runs] == [0, 1] * 4
    for run, row in zip(runs, rows):
        lineage, schedule = run["pbt"]["lineage"], run["pbt"]["schedule"]
        assert row["member"] == str(run["pbt"]["member"]) == str(lineage[-1])
        assert row["lineage"] == ">".join(str(m) for m in lineage)  # one epoch per leg
        assert float(row["final_learning_rate"]) == schedule["learning_rate"][-1]
        assert len(schedule["momentum"]) == 3
        if lineage[0] == run["pbt"]["member"]:  # its first epoch is its own: the drawn values
            drawn = run["hyperparameters"]["learning_rate"]
            assert schedule["learning_rate"][0] == pytest.approx(drawn, rel=1e-6)
    # the last exploit's copier carries on from its donor's state: the donor's past, then its own
    ((member, donor),) = pbt["copies"][-1]
    copier, given = (
        next(r["pbt"] for r in runs if r["pbt"]["member"] == m) for m in (member, donor)
    )
    assert copier["lineage"] == [*given["lineage"][:2], member]
    assert copier["schedule"]["momentum"][:2] == given["schedule"]["momentum"][:2]
    # the pick: the best mean over the seeds, told by its member and final values
    acc = np.array([r["val_accuracy"] for r in runs]).reshape(4, 2).mean(1)
    best = sweep["best"]
    assert best["n_seeds"] == 2 and best["val_accuracy"] == pytest.approx(acc.max())
    assert best["member"] == int(np.argmax(acc)) and best["lineage"].count(">") == 2
    assert f"best: member={best['member']}, final_learning_rate=" in printed
    for name in ("pbt_schedules.png", "scatter_test_accuracy_learning_rate_momentum.png"):
        assert (out / name).stat().st_size > 10_000
    assert matplotlib.image.imread(out / "pbt_schedules.png").shape[1] > 3 * 400  # three panels


def test_search_optuna_trains_its_trials_in_batches(tmp_path, monkeypatch, tiny_mnist):
    argv = ["--search", "optuna", "--trials", "10", "--lr", "1e-3:1", "--momentum", "0:0.9"]
    _, sweep, runs, rows = search_results(tmp_path, monkeypatch, tiny_mnist, *argv)
    assert len(runs) == len(rows) == 10 and sweep["search"]["batch"] == 8
    assert len({r["hyperparameters"]["learning_rate"] for r in runs}) == 10
    best = max(r["val_accuracy"] for r in runs)  # Optuna maximised the validation accuracy
    assert sweep["search"]["best_trial"]["value"] == best == sweep["best"]["val_accuracy"]


def test_sweep_with_seeds_averages_them_for_the_best_cell(tmp_path, monkeypatch, tiny_mnist):
    argv = ["--sweep", "--lr", "0.01,0.1", "--momentum", "0,0.9", "--seeds", "0,1,2"]
    out, sweep, runs, rows = search_results(tmp_path, monkeypatch, tiny_mnist, *argv)
    assert len(runs) == 12 and [r["seed"] for r in runs] == [0, 1, 2] * 4
    assert [int(r["seed"]) for r in rows] == [0, 1, 2] * 4
    acc = np.array([r["val_accuracy"] for r in runs]).reshape(4, 3)  # the pick's: validation
    assert sweep["best"]["val_accuracy"] == pytest.approx(acc.mean(1).max())
    assert sweep["best"]["val_accuracy_std"] == pytest.approx(acc.std(1)[acc.mean(1).argmax()])
    test = np.array([r["test_accuracy"] for r in runs]).reshape(4, 3).mean(1)
    assert sweep["best"]["test_accuracy"] == pytest.approx(test[acc.mean(1).argmax()])
    assert (out / "heatmap_test_accuracy_learning_rate_momentum.png").stat().st_size > 10_000


def test_a_search_selects_on_validation_and_reports_the_picks_test_accuracy(
    tmp_path, monkeypatch, tiny_mnist, capsys
):
    argv = ["--search", "random", "--trials", "6", "--lr", "1e-3:1", "--momentum", "0:0.9"]
    out, sweep, runs, rows = search_results(
        tmp_path, monkeypatch, tiny_mnist, *argv, "--validation", "40"
    )
    printed = capsys.readouterr().out
    assert "validation: the last 40 training examples held out" in printed
    assert sweep["selected_on"] == sweep["search"]["selected_on"] == "val_accuracy"
    assert all(r["validation_examples"] == 40 and r["train_examples"] == 152 for r in runs)
    val = [r["val_accuracy"] for r in runs]
    test = [r["test_accuracy"] for r in runs]
    i = int(np.argmax(val))  # the best by validation: its test accuracy is reported, not the max
    assert sweep["best"]["val_accuracy"] == val[i] and sweep["best"]["test_accuracy"] == test[i]
    assert sweep["best"]["learning_rate"] == runs[i]["hyperparameters"]["learning_rate"]
    assert [float(r["val_accuracy"]) for r in rows] == val
    assert [float(r["test_accuracy"]) for r in rows] == test
    assert "picked on it; its test accuracy" in printed
    assert (out / "scatter_val_accuracy_learning_rate_momentum.png").stat().st_size > 10_000


def test_validation_0_selects_on_test_with_a_warning(tmp_path, monkeypatch, tiny_mnist, capsys):
    argv = ["--sweep", "--lr", "0.01,0.1", "--validation", "0"]
    _, sweep, runs, rows = search_results(tmp_path, monkeypatch, tiny_mnist, *argv)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "--validation 0: selecting on TEST accuracy" in err
    assert sweep["selected_on"] == "test_accuracy" and "val_accuracy" not in rows[0]
    assert all(r["val_accuracy"] is None and r["train_examples"] == 192 for r in runs)
    assert sweep["best"]["test_accuracy"] == max(r["test_accuracy"] for r in runs)


@pytest.mark.parametrize("n", ["-1", "192", "5000"])
def test_a_bad_validation_size_is_one_line_and_exit_2(tmp_path, monkeypatch, tiny_mnist, capsys, n):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "out"
    argv = ["--sweep", "--lr", "0.01,0.1", "--epochs", "1", "--validation", n, "--out", str(out)]
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's error: usage, then the one line
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--validation" in err[-1] and err[-1].startswith("mnist.py: error:")
    assert not out.exists()


def test_every_file_a_run_writes_is_one_the_folder_rule_knows(tmp_path):
    """A file the study writes but folders.OUTPUTS misses makes --overwrite refuse the study's own
    run as 'not written by the study' (pbt_schedules.png was missed)."""
    import re

    from jaxmom.studies.mnist import folders

    names = set()
    for module in ("report", "pbt", "rows", "cli"):
        text = (ROOT / "jaxmom" / "studies" / "mnist" / f"{module}.py").read_text()
        names |= set(re.findall(r'"([a-z_]+\.(?:png|csv|json))"', text))
    for name in sorted(names):
        (tmp_path / name).write_text("x")
    assert folders.foreign(tmp_path) == [], names
