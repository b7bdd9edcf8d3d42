"""JAX's persistent compilation cache (issue 26): never turned on by an import, on in one call for a
library user (``sweep.use_compile_cache``), on by default in the scripts (``configure_compile_cache``:
flag, then ``$JAXMOM_COMPILE_CACHE``, then a per-user folder), in a private folder, and an unusable
folder or a broken entry only warns, in one line; ``fit``'s automatic chunk size compiles no
program of its own."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fit_problem import X, Y, mlp_init, mlp_loss, mlp_metrics, sgd

from jaxmom import sweep
from jaxmom.studies.mnist import cli
from jaxmom.sweep import _compile_cache, _engine

ROOT = Path(__file__).resolve().parents[1]

# One fresh process (whose environment names no cache) runs every step that touches JAX's
# global configuration, so this test process keeps its own.
SCRIPT = """
    import os, sys
    from pathlib import Path
    import jax, jaxmom, jaxmom.sweep
    from jaxmom.studies.mnist import cli
    import jaxmom.studies.mnist.train

    # importing the library changes no global JAX setting
    assert jax.config.jax_compilation_cache_dir is None, jax.config.jax_compilation_cache_dir
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0

    from jax import monitoring
    hits = []
    monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: hits.append(event)
        if event == "/jax/compilation_cache/compile_time_saved_sec" else None)
    from jaxmom.sweep import configure_compile_cache, use_compile_cache
    tmp = Path(sys.argv[1])
    os.environ["JAXMOM_COMPILE_CACHE"] = str(tmp / "from-env")
    assert configure_compile_cache(prog="t") == tmp / "from-env"           # the variable
    assert configure_compile_cache(prog="t") == tmp / "from-env"           # kept once chosen
    assert configure_compile_cache(tmp / "flag", prog="t") == tmp / "flag"  # a flag wins
    assert configure_compile_cache("off", prog="t") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert configure_compile_cache(prog="t") is None                       # off stays off

    folder = use_compile_cache(tmp / "cache")
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    x = jax.numpy.arange(3.0)
    def program():  # a fresh function each time: no in-memory cache between them
        return jax.jit(lambda v: jax.numpy.sin(v) * 2 + 1)
    first = program()(x)
    entries = sorted(folder.glob("*-cache"))
    assert entries and not hits, (entries, hits)  # compiled and kept, small as it is
    assert (program()(x) == first).all() and hits  # loaded, not compiled
    for entry in entries:
        entry.write_bytes(b"garbage")
    configure_compile_cache(folder, prog="t")  # one-line warnings from here on
    assert (program()(x) == first).all() and (program()(x + 0) == first).all()
    print("ok")
"""


@pytest.mark.slow  # a process of its own
def test_no_import_turns_the_cache_on_and_the_scripts_choice_reads_flag_then_environment(
    tmp_path,
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXMOM_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr[-3000:]
    # the broken entries: one line for them all, then recompiled and written again
    assert out.stderr.count("t: warning: compile cache: Error reading persistent") == 1, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_the_default_folder_is_per_user_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sweep.default_compile_cache_dir() == tmp_path / "jaxmom" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: absolute or unset
    assert sweep.default_compile_cache_dir() == Path.home() / ".cache" / "jaxmom" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sweep.default_compile_cache_dir() == Path.home() / ".cache" / "jaxmom" / "jax"


def test_the_folder_is_created_private_and_an_unsafe_or_unusable_one_is_refused(tmp_path):
    made = _compile_cache._private_folder(tmp_path / "a" / "b")
    assert made == tmp_path / "a" / "b" and made.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (tmp_path / "file").write_text("")
    for path, words in [
        (shared, "may be written by other users"),
        (tmp_path / "file", "is not a folder"),
        (tmp_path / "file" / "below", "cannot create"),
    ]:
        with pytest.raises(OSError, match=words) as e:
            _compile_cache._private_folder(path)
        assert "\n" not in str(e.value)


def test_an_unusable_folder_is_one_warning_and_no_cache(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert _compile_cache.configure_compile_cache(tmp_path / "file", prog="mnist.py") is None
    err = capsys.readouterr().err
    assert err == f"mnist.py: warning: compile cache off: {tmp_path / 'file'} is not a folder\n"


def test_the_study_takes_the_cache_flags():
    parse = cli.build_parser().parse_args
    assert parse([]).compile_cache is None
    assert parse(["--compile-cache", "/x"]).compile_cache == "/x"
    assert parse(["--no-compile-cache"]).compile_cache == "off"


def test_the_automatic_chunk_size_compiles_no_program_of_its_own():
    """The memory estimate reads the compiled programs of the chunk it then runs: one program of
    each kind for this loss (none of one configuration), whose compile seconds the fit reports."""

    def loss(p, x, y):  # a fresh function: no program of it is cached yet
        return mlp_loss(p, x, y)

    res = sweep.fit(
        sweep.product(lr=[0.1, 0.2, 0.3, 0.4]), init=mlp_init, loss=loss, optimizer=sgd,
        train=(X, Y), batch_size=16, epochs=1, fixed={"momentum": 0.5}, eval=(X, Y),
        evaluate=mlp_metrics, progress=False,
    )  # fmt: skip
    assert res.compile_seconds > 0 and np.isfinite(res.metrics["loss"]).all()
    keys = [k[0] if isinstance(k[0], tuple) else k for k in _engine._COMPILED]  # (eval's, set)
    keys = [k for k in keys if k[0] == "fit" and loss in k[2] and k[1] != "state shapes"]
    kinds = sorted((k[1], k[6][-1]) for k in keys)  # (kind, chunk size)
    assert kinds == [("epoch", 4), ("eval", 4), ("init", 4)], kinds
