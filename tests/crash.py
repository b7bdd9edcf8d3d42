"""A run crashed between two checkpoint saves, for the resume tests of tests/test_driver.py and
tests/test_pbt.py (pinned: ``_checkpoint.Checkpoint.save``)."""

import pytest

from jaxmom.sweep._checkpoint import Checkpoint


class Crash(Exception):
    pass


def crash_after_save(monkeypatch, k: int, run) -> None:
    """``run()`` with ``Checkpoint.save`` raising :class:`Crash` right after its ``k``-th save."""
    save, n = Checkpoint.save, [0]

    def crash_after(self, header, *args):
        save(self, header, *args)
        n[0] += 1
        if n[0] == k:
            raise Crash

    monkeypatch.setattr(Checkpoint, "save", crash_after)
    with pytest.raises(Crash):
        run()
    monkeypatch.setattr(Checkpoint, "save", save)
