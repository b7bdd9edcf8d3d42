"""jaxmom.sweep._checkpoint: headers written as strict JSON and checked on read (one line naming
the file and the field), and a folder that cleans up its own temporary and superseded files."""

import json
import math

import numpy as np
import pytest

from jaxmom.sweep._checkpoint import Checkpoint

STEM = "fit-0123456789abcdef"


def state():
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.zeros(2, np.int32)}


def header(chunk=0, epoch=1, **kw):
    seconds = {"compile": 0.5, "train": 1.0, "eval": 0.25}
    return {"chunk": chunk, "epoch": epoch, "chunk_size": 2, "devices": 1, "seconds": seconds, **kw}


def refuse(constant):
    raise AssertionError(f"not strict JSON: {constant}")


def test_the_header_is_strict_json_and_null_reads_back_as_nan(tmp_path):
    ck = Checkpoint(tmp_path, STEM)
    h = header()
    h["seconds"]["eval"] = float("nan")
    ck.save(h, state(), {"result/loss": np.array([np.nan, 1.0], np.float32)})
    written = json.loads(ck.header.read_text(), parse_constant=refuse)
    assert written["seconds"]["eval"] is None
    loaded, st, arrays = ck.load(state())
    assert math.isnan(loaded["seconds"]["eval"]) and loaded["seconds"]["train"] == 1.0
    np.testing.assert_array_equal(st["w"], state()["w"])
    np.testing.assert_array_equal(arrays["result/loss"], [np.nan, 1.0])


def saved(tmp_path, **kw):
    ck = Checkpoint(tmp_path, STEM)
    ck.save(header(**kw), state(), {})
    return ck


def rewrite(ck, change):
    h = json.loads(ck.header.read_text())
    ck.header.write_text(json.dumps(change(h)))


def without(field):
    return lambda h: {k: v for k, v in h.items() if k != field}


def setting(**kw):
    return lambda h: {**h, **kw}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: [], r"is not a checkpoint header: a JSON object was expected, got list"),
        (lambda h: "x", r"a JSON object was expected, got str"),
        (without("epoch"), r"field 'epoch' is missing"),
        (without("seconds"), r"field 'seconds' is missing"),
        (setting(epoch=-1), r"field 'epoch' must be a non-negative integer, got -1"),
        (setting(chunk="0"), r"field 'chunk' must be a non-negative integer, got '0'"),
        (setting(chunk=True), r"field 'chunk' must be a non-negative integer, got True"),
        (setting(epoch=1.0), r"field 'epoch' must be a non-negative integer, got 1.0"),
        (setting(chunk_size=0), r"field 'chunk_size' must be a positive integer, got 0"),
        (setting(devices=None), r"field 'devices' must be a positive integer, got None"),
        (setting(seconds=5), r"field 'seconds' must be an object of numbers"),
        (setting(seconds={"train": 1.0}), r"field 'seconds' must be an object of numbers"),
        (setting(sha256=7), r"field 'sha256' must be 64 hex digits, got 7"),
        (
            setting(file="../../elsewhere.npz"),
            r"field 'file' must be 'fit-0123456789abcdef.0.1.npz'",
        ),
        (setting(epoch=2), r"field 'file' must be 'fit-0123456789abcdef.0.2.npz'"),
    ],
)
def test_a_header_edited_by_hand_is_refused_in_one_line_naming_the_file_and_field(
    tmp_path, change, message
):
    ck = saved(tmp_path)
    rewrite(ck, change)
    for read in (ck.read_header, lambda: ck.load(state())):
        with pytest.raises(ValueError, match=message) as e:
            read()
        assert str(ck.header) in str(e.value) and "\n" not in str(e.value)


def test_the_runs_sizes_bound_the_chunk_and_the_epoch(tmp_path):
    ck = saved(tmp_path, chunk=2, epoch=3)
    assert ck.read_header(chunks=3, epochs=3)["epoch"] == 3  # the last chunk, finished
    assert ck.load(state(), chunks=3, epochs=3) is not None
    for kw, message in (
        ({"chunks": 2}, r"field 'chunk' is 2, beyond the run's 2 chunks"),
        ({"epochs": 2}, r"field 'epoch' is 3, beyond the run's 2 epochs"),
    ):
        with pytest.raises(ValueError, match=message) as e:
            ck.read_header(**kw)
        assert str(ck.header) in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(ValueError, match=message):
            ck.load(state(), **kw)
    # a header rewritten to chunk 7 (with its file renamed to match) is out of a 3-chunk run
    name = f"{STEM}.7.3.npz"
    (tmp_path / f"{STEM}.2.3.npz").rename(tmp_path / name)
    rewrite(ck, setting(chunk=7, file=name))
    with pytest.raises(ValueError, match=r"field 'chunk' is 7, beyond the run's 3 chunks"):
        ck.load(state(), chunks=3, epochs=3)
    rewrite(ck, setting(chunk=0, epoch=99, file=f"{STEM}.0.99.npz"))
    with pytest.raises(ValueError, match=r"field 'epoch' is 99, beyond the run's 3 epochs"):
        ck.read_header(chunks=3, epochs=3)


def test_an_unreadable_or_deeply_nested_header_is_one_line(tmp_path):
    ck = saved(tmp_path)
    for text in ("{not json", "[" * 100_000 + "]" * 100_000):
        ck.header.write_text(text)
        with pytest.raises(ValueError, match="cannot be read") as e:
            ck.read_header()
        assert str(ck.header) in str(e.value) and "\n" not in str(e.value)


# ---- litter ----------------------------------------------------------------------------------


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_opening_and_saving_remove_this_stems_temporary_and_superseded_files_only(tmp_path):
    ck = saved(tmp_path, chunk=0, epoch=1)
    live = f"{STEM}.0.1.npz"
    big = b"x" * 100_000
    ours = [  # a kill during a state write, during a header write; a superseded state file
        f".{STEM}.0.2.npz.abc_1234.tmp",
        f".{STEM}.json.k9x2m1qq.tmp",
        f"{STEM}.0.0.npz",
    ]
    others = [  # another fingerprint's live files and temporaries, and a user's file
        "fit-fedcba9876543210.json",
        "fit-fedcba9876543210.0.1.npz",
        ".fit-fedcba9876543210.0.2.npz.abc_1234.tmp",
        f"{STEM}.0.1.npz.bak",
        "notes.txt",
    ]
    for name in ours + others:
        (tmp_path / name).write_bytes(big)
    Checkpoint(tmp_path, STEM)  # the next open
    assert names(tmp_path) == sorted([f"{STEM}.json", live, *others])
    for name in ours:
        (tmp_path / name).write_bytes(big)
    ck.save(header(chunk=0, epoch=2), state(), {})  # the next save
    assert names(tmp_path) == sorted([f"{STEM}.json", f"{STEM}.0.2.npz", *others])
    assert ck.load(state())[0]["epoch"] == 2


def test_a_kill_before_the_header_keeps_the_named_file_and_the_next_open_drops_the_orphan(
    tmp_path, monkeypatch
):
    from jaxmom.sweep import _files

    ck = saved(tmp_path, chunk=0, epoch=1)

    def killed(*args, **kw):
        raise KeyboardInterrupt  # a kill after the state file, before its header

    with monkeypatch.context() as m:
        m.setattr(_files, "write_json", killed)
        with pytest.raises(KeyboardInterrupt):
            ck.save(header(chunk=0, epoch=2), state(), {})
    assert names(tmp_path) == sorted([f"{STEM}.json", f"{STEM}.0.1.npz", f"{STEM}.0.2.npz"])
    again = Checkpoint(tmp_path, STEM)
    assert names(tmp_path) == sorted([f"{STEM}.json", f"{STEM}.0.1.npz"])
    assert again.load(state())[0]["epoch"] == 1


def test_a_refused_header_keeps_its_state_files_for_a_look_by_hand(tmp_path):
    ck = saved(tmp_path)
    rewrite(ck, without("sha256"))
    (tmp_path / f"{STEM}.0.0.npz").write_bytes(b"old")
    (tmp_path / f".{STEM}.json.abcdefgh.tmp").write_bytes(b"half")
    Checkpoint(tmp_path, STEM)
    assert names(tmp_path) == sorted([f"{STEM}.json", f"{STEM}.0.0.npz", f"{STEM}.0.1.npz"])


def test_an_empty_checkpoint_dir_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint_dir is '', which names no folder") as e:
        Checkpoint("", STEM)
    assert "\n" not in str(e.value) and names(tmp_path) == []
