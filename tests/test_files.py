"""Atomic outputs: a failed write leaves the earlier file whole and no temporary file behind."""

import os

import pytest

# Pinned: the atomic writers of jaxmom.sweep._files, which every output goes through.
from jaxmom.sweep._files import OutputError, atomic_open, check_writable, write_text


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "results.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_failed_write_keeps_the_earlier_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_text(path, "earlier results")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "earlier results"
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_text(path, "earlier results")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"^cannot write .*results.json: No space left") as e:
        write_text(path, "new")
    assert "\n" not in str(e.value)
    assert path.read_text() == "earlier results"
    assert os.listdir(tmp_path) == ["results.json"]


def test_outputs_are_not_private(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "x")
    assert path.stat().st_mode & 0o044  # mkstemp's 0600 is widened to the umask's mode


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    assert check_writable(tmp_path / "new" / "folder").is_dir()
    with pytest.raises(OutputError, match="^output folder /proc/self is not writable"):
        check_writable("/proc/self")
