"""jaxmom.sweep.optuna_search: Optuna's ask/tell in batches, each batch one compiled fit; a
diverged trial is FAILED; two processes on one journal-file study record every trial once."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from toy_problem import ONES, TRACES, toy_eval, toy_init, toy_loss, toy_tx

from jaxmom import sweep
from jaxmom.sweep import _setup  # pinned: setup refuses a bad cell before any compile

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"lr": sweep.uniform(0.5, 4.0), "boom": sweep.choice([0, 1])}


def fit_kwargs(loss=toy_loss, epochs=2):
    return dict(
        init=toy_init, loss=loss, optimizer=toy_tx, train=(ONES,), batch_size=1, epochs=epochs,
        eval=(ONES,), evaluate=toy_eval, progress=False, chunk_size=None,
    )  # fmt: skip


def check_trials(study, n, epochs=2):
    """Every trial told once: boom 1 FAILED, else COMPLETE with |p - 12|, p = 4 lr epochs."""
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(n))
    for t in trials:
        if t.params["boom"] == 1:
            assert t.state == optuna.trial.TrialState.FAIL and t.value is None, t
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE, t
            assert t.value == pytest.approx(abs(4 * epochs * t.params["lr"] - 12), rel=1e-5)
            assert t.user_attrs == {"std": 0.0, "n_seeds": 1}


def test_batches_are_asked_trained_as_one_fit_and_told_with_diverged_trials_failed():
    traced = []

    def loss(params, x):  # its own function: its own compiled program, counted
        traced.append(1)
        return toy_loss(params, x)

    # fit's setup may trace a new loss once, abstractly (on CPU: does it convolve?): done first.
    kw = {k: v for k, v in fit_kwargs(loss).items() if k not in ("progress", "chunk_size")}
    _setup.setup(sweep.product(lr=[1.0], boom=[0]), **kw)
    traced.clear()
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({"lr": 2.0, "boom": 1})  # diverges
    study.enqueue_trial({"lr": 1.5, "boom": 0})  # exactly 12 after 2 epochs: the best
    results = sweep.optuna_search(study, SPACE, fit_kwargs(loss), trials=7, batch=3, metric="dist")
    assert len(traced) == 1  # 3 rounds (3, 3, 1 padded to 3): one compiled program
    assert [r.grid.shape for r in results] == [(3,), (3,), (1,)]
    check_trials(study, 7)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert study.best_trial.number == 1 and study.best_value == pytest.approx(0.0, abs=1e-5)
    last = study.trials[6]
    np.testing.assert_allclose(results[2].metrics["p"][0, -1], 8 * last.params["lr"], rtol=1e-6)


def test_seeds_are_averaged_into_the_told_value():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lr": 1.0, "boom": 0})
    sweep.optuna_search(study, SPACE, fit_kwargs(), trials=1, batch=1, metric="p", seeds=3)
    (t,) = study.trials
    assert t.value == pytest.approx(8.0) and t.user_attrs == {"std": 0.0, "n_seeds": 3}


PROCESS = textwrap.dedent("""
    import sys, optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from jaxmom import sweep
    from test_optuna_search import SPACE, fit_kwargs
    storage = JournalStorage(JournalFileBackend(sys.argv[1]))
    study = optuna.load_study(study_name="shared", storage=storage)
    sweep.optuna_search(study, SPACE, fit_kwargs(), trials=4, batch=2, metric="dist")
    print("ok")
""")


@pytest.mark.slow  # two processes (main registers the marker: pytest -m "not slow")
def test_two_processes_sharing_a_journal_file_study_record_every_trial_once(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "study.log")
    storage = JournalStorage(JournalFileBackend(path))
    optuna.create_study(study_name="shared", storage=storage, direction="minimize")
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, path],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.split() == ["ok"], err[-3000:]
    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(path)))
    check_trials(study, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"trials": 0}, "trials must be a positive integer, got 0"),
        ({"batch": True}, "batch must be a positive integer, got True"),
        ({"space": {"lr": [0.1, 0.2]}}, r"lr=\[0.1, 0.2\] is not a space"),
        ({"space": {}}, "needs at least one hyperparameter space"),
        ({"fit_kwargs": {"halving": sweep.Halving()}}, "must not hold grid or halving"),
        ({"seeds": [-1]}, r"seed -1 is outside the allowed range"),
        ({"seeds": 0}, r"seeds must be a positive count or a list of integers, got 0$"),
        ({"seeds": [1, 2.0]}, r"seeds must be a positive count or a list of integers"),
        (
            {"metric": "accuracy"},  # checked on evaluate's names, traced: nothing trains
            r"metric 'accuracy' is not one of fit's per-epoch metrics "
            r"\['loss', 'epoch_loss', 'dist', 'p'\]",
        ),
        (
            {"metric": "dist", "fit_kwargs": {**fit_kwargs(), "eval": None, "evaluate": None}},
            r"metric 'dist' is not one of fit's per-epoch metrics \['loss', 'epoch_loss'\]",
        ),
        ({"metric": 3}, r"metric must be a metric's name, got 3"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_asking(kwargs, message):
    study = optuna.create_study()
    args = {"space": SPACE, "fit_kwargs": fit_kwargs(), "trials": 2, "batch": 2, **kwargs}
    traced = len(TRACES)
    with pytest.raises(ValueError, match=message) as e:
        sweep.optuna_search(study, **args)
    assert study.trials == [] and "\n" not in str(e.value)
    # refused before fit trains: the loss at most traced abstractly, by fit's own checks
    assert len(TRACES) <= traced + 2
    two = optuna.create_study(directions=["minimize", "maximize"])
    with pytest.raises(ValueError, match="one objective"):
        sweep.optuna_search(two, SPACE, fit_kwargs(), trials=1, batch=1)


def test_a_metric_whose_name_contradicts_the_studys_direction_is_refused_before_asking():
    study = optuna.create_study(direction="maximize")  # would keep the farthest from 12
    with pytest.raises(ValueError, match="the study would maximize 'dist'") as e:
        sweep.optuna_search(study, SPACE, fit_kwargs(), trials=2, batch=2, metric="dist")
    assert study.trials == [] and "\n" not in str(e.value)
    ok = optuna.create_study(direction="maximize")  # a name that tells nothing: the study decides
    results = sweep.optuna_search(ok, SPACE, fit_kwargs(), trials=1, batch=1, metric="p")
    assert results[0].info["selected_on"] == "p"


def test_an_error_after_asking_tells_the_asked_trials_fail_and_leaves_none_running(monkeypatch):
    study = optuna.create_study()
    kw = {**fit_kwargs(), "batch_size": 0}  # fit's own setup refuses it before anything is asked
    with pytest.raises(ValueError, match="batch_size"):
        sweep.optuna_search(study, SPACE, kw, trials=4, batch=2)
    assert study.trials == []

    def broken(grid, **kw):  # pinned: _fit.fit, to fail after the batch was asked
        raise RuntimeError("out of memory")

    monkeypatch.setattr("jaxmom.sweep._fit.fit", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        sweep.optuna_search(study, SPACE, fit_kwargs(), trials=4, batch=2)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2
