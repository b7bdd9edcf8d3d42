"""docs/mixed_precision.md is what experiments/state_bytes.py writes now, and its numbers are
the bytes the optimizers' states really take."""

from pathlib import Path

import jax
import jax.numpy as jnp

import jaxmom

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_page_is_what_the_script_writes(load_script):
    script = load_script("state_bytes")
    committed = (ROOT / "docs" / "mixed_precision.md").read_text(encoding="utf-8")
    assert committed == script.page(), "rerun: python experiments/state_bytes.py"


def test_the_numbers_are_the_allocated_bytes(load_script):
    """Two cells against states actually allocated, counted leaf by leaf."""
    script = load_script("state_bytes")
    params = jnp.zeros(script.SIZE, jnp.float32)
    state = jaxmom.adam(mu_dtype=jnp.bfloat16).init(params)
    allocated = sum(x.nbytes for x in jax.tree.leaves(state)) / script.SIZE
    assert script.state_bytes("adam()", "float32 params, bfloat16 first moments") == allocated
    assert round(allocated, 2) == 6.0  # 2 bytes of mu, 4 of nu, one int32 count
    state = jaxmom.sgd(0.1, 0.9).init(params.astype(jnp.bfloat16))
    allocated = sum(x.nbytes for x in jax.tree.leaves(state)) / script.SIZE
    assert script.state_bytes("sgd(lr, 0.9)", "bfloat16 params") == allocated


def test_the_script_writes_through_the_atomic_writer(load_script, tmp_path, monkeypatch):
    script = load_script("state_bytes")
    monkeypatch.setattr(script, "PAGE", tmp_path / "page.md")
    script.main([])
    assert (tmp_path / "page.md").read_text(encoding="utf-8") == script.page()
    assert [p.name for p in tmp_path.iterdir()] == ["page.md"]  # no temporary file left
