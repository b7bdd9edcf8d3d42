"""Ctrl-C that Python would swallow, kept until the next epoch.

A SIGINT raises ``KeyboardInterrupt`` wherever the main thread is when Python runs its handler.
Where that is a callback whose exceptions Python ignores (JAX's garbage-collection callback
``_xla_gc_callback``, a ``__del__``, a weakref finaliser), the interrupt is printed as "Exception
ignored in ..." and lost, and a long run trains on to its end.

Inside :func:`catch_interrupts` a SIGINT also marks the interrupt as pending, and a
``KeyboardInterrupt`` that Python ignored is marked instead of printed; :func:`check_interrupt`,
which ``fit``'s driver calls after every epoch, raises ``KeyboardInterrupt`` when one is pending.
So a Ctrl-C stops a run within one epoch whatever it interrupted. Outside the block nothing
changes: :func:`check_interrupt` finds nothing pending.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

_pending = [False]  # an interrupt caught and not yet raised at a safe point


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C caught by :func:`catch_interrupts` is pending."""
    if _pending[0]:
        _pending[0] = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def catch_interrupts() -> Iterator[None]:
    """Within the block, a SIGINT raises ``KeyboardInterrupt`` as Python's own handler does and
    is also kept pending until :func:`check_interrupt` raises it again, in case it landed where
    Python ignores exceptions; such an ignored ``KeyboardInterrupt`` is not printed. The earlier
    SIGINT handler and ``sys.unraisablehook`` are restored at the end. Where SIGINT is not handled
    by Python's default handler (ignored, or the caller's own), or outside the main thread, the
    handler is left alone."""
    ours = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if not ours:
        yield
        return
    hook = sys.unraisablehook

    def on_sigint(signum, frame):
        _pending[0] = True
        raise KeyboardInterrupt

    def on_unraisable(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _pending[0] = True  # ignored where it landed: raised at the next check
        else:
            hook(unraisable)

    _pending[0] = False
    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = on_unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = hook
        _pending[0] = False
