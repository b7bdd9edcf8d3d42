"""Ctrl-C is never swallowed (issue 25 item 7): within ``jaxmom.sweep.catch_interrupts`` a SIGINT
that lands where Python ignores exceptions (a garbage-collection callback, as JAX's
``_xla_gc_callback``) is raised again by ``check_interrupt``, which ``fit`` calls after every epoch.

The swallowed case is made deterministic: a gc callback sends SIGINT to this process and runs on
until Python's handler has raised ``KeyboardInterrupt`` inside it; ``gc`` then ignores it, as it
ignores any exception of a callback."""

import gc
import json
import os
import signal
import sys

import numpy as np
import pytest
from fit_problem import X, Y, mlp_init, mlp_loss, sgd

from jaxmom import sweep


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, even where the tests run with SIGINT ignored (a shell's
    background job)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def swallow_a_ctrl_c() -> list[bool]:
    """Runs a garbage collection during which SIGINT arrives inside a gc callback; returns a list
    that holds True once the ``KeyboardInterrupt`` was raised there (and ignored by ``gc``)."""
    landed = []

    def callback(phase, info):
        gc.callbacks.remove(callback)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # Python runs the signal's handler here, inside the callback
                pass
        except KeyboardInterrupt:
            landed.append(True)
            raise

    gc.callbacks.append(callback)
    gc.collect()
    return landed


@pytest.fixture
def unraisable(monkeypatch):
    """What reaches ``sys.unraisablehook`` from outside ``catch_interrupts``: Python would print
    each as "Exception ignored in ..."."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(type(u.exc_value)))
    return seen


def test_a_ctrl_c_swallowed_by_a_gc_callback_is_raised_by_the_next_check(python_sigint, unraisable):
    with sweep.catch_interrupts():
        assert swallow_a_ctrl_c() == [True]  # raised in the callback, and gc went on
        with pytest.raises(KeyboardInterrupt):
            sweep.check_interrupt()
        sweep.check_interrupt()  # raised once
    assert unraisable == []  # not printed either


def test_outside_the_block_everything_is_as_it_was(python_sigint, unraisable):
    hook = sys.unraisablehook
    with sweep.catch_interrupts():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        gc.callbacks.append(lambda phase, info: 1 / 0)  # not an interrupt: passed on
        gc.collect()
        gc.callbacks.pop()
    assert unraisable == [ZeroDivisionError, ZeroDivisionError]  # gc's start and stop
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.unraisablehook is hook
    assert swallow_a_ctrl_c() == [True]
    sweep.check_interrupt()  # nothing pending outside the block: Python's own behaviour
    assert unraisable[2:] == [KeyboardInterrupt]


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sweep.catch_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_fit_stops_after_the_epoch_in_which_a_ctrl_c_was_swallowed(python_sigint, tmp_path):
    """The interrupt was swallowed before the first epoch: fit raises it after that epoch (its
    checkpoint saved), not after the fifth."""
    kw = dict(
        init=mlp_init,
        loss=mlp_loss,
        optimizer=sgd,
        train=(X, Y),
        batch_size=8,
        epochs=5,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    grid = sweep.product(lr=[0.1, 0.2], momentum=[0.9])
    with sweep.catch_interrupts():
        assert swallow_a_ctrl_c() == [True]
        with pytest.raises(KeyboardInterrupt):
            sweep.fit(grid, **kw)
    (header,) = tmp_path.glob("*.json")
    assert json.loads(header.read_text())["epoch"] == 1
    result = sweep.fit(grid, **kw)  # resumes from there, nothing pending
    assert np.isfinite(result.metrics["epoch_loss"]).all()
