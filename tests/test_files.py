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


def refuse(constant):
    raise AssertionError(f"not strict JSON: {constant}")


def test_json_is_written_strict_with_nan_and_inf_as_null(tmp_path):
    import json

    import numpy as np

    from jaxmom.sweep._files import json_text, nan_if_null, write_json

    obj = {
        "nan": float("nan"),
        "curve": [1.0, float("inf"), -np.inf],
        "f32": np.float32("nan"),
        "array": np.array([0.5, np.nan]),
        "int": np.int64(3),
        "flag": np.bool_(True),
        "none": None,
        "pair": (1, "a"),
    }
    expected = {
        "nan": None,
        "curve": [1.0, None, None],
        "f32": None,
        "array": [0.5, None],
        "int": 3,
        "flag": True,
        "none": None,
        "pair": [1, "a"],
    }
    assert json.loads(json_text(obj), parse_constant=refuse) == expected
    write_json(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=refuse) == expected
    assert json_text([object()], default=lambda o: float("nan")) == "[\n null\n]"
    with pytest.raises(TypeError):
        json_text([object()])
    assert np.isnan(nan_if_null(None)) and nan_if_null(2.5) == 2.5


def test_the_studys_results_json_is_strict(tmp_path):
    import json

    import numpy as np

    from jaxmom.studies.mnist import report

    stopped = {"epoch_train_loss": [0.5, np.float32("nan")], "final_train_loss": float("nan")}
    report.write_json(tmp_path / "results.json", {"runs": [stopped], "sweep": None})
    back = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert back == {
        "runs": [{"epoch_train_loss": [0.5, None], "final_train_loss": None}],
        "sweep": None,
    }
