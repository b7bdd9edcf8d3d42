"""The documentation site: it builds with warnings as errors, its API reference has an entry for
every public name, its formulas render, and a broken reference or example fails."""

import inspect
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import jaxmom
from jaxmom import sweep

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    """``sphinx -W -b html`` with docs/conf.py, in a fresh process (as CI runs it)."""
    command = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "-c", str(DOCS)]
    command += ["-d", str(out / ".doctrees"), str(source), str(out)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = sphinx_build(DOCS, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def inventory(path: Path) -> dict[str, str]:
    """objects.inv (version 2) as {name: "domain:role"}."""
    with open(path, "rb") as f:
        assert f.readline().startswith(b"# Sphinx inventory version 2")
        for _ in range(3):
            f.readline()
        body = zlib.decompress(f.read()).decode()
    entries = (
        re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s+\S*\s+.*", line) for line in body.splitlines()
    )
    return {m[1]: m[2] for m in entries if m}


def public_names(module) -> set[str]:
    """``__all__``, else every public function and class of jaxmom's own reachable from it."""
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__.split(".")[0] == "jaxmom"
    }


@pytest.mark.parametrize("module", [jaxmom, sweep], ids=lambda m: m.__name__)
def test_every_public_name_has_an_entry(site, module):
    documented = inventory(site / "objects.inv")
    names = public_names(module)
    assert names, f"{module.__name__} exports nothing?"
    missing = sorted(n for n in names if f"{module.__name__}.{n}" not in documented)
    assert not missing, f"no API entry for {missing}"
    for name in names:
        value = getattr(module, name)
        role = documented[f"{module.__name__}.{name}"]
        assert role == ("py:class" if inspect.isclass(value) else "py:function"), (name, role)


def test_optimizers_are_listed_with_rendered_math(site):
    page = (site / "api" / "optimizers.html").read_text()
    assert page.count('class="math notranslate nohighlight"') >= 5  # the update rules
    assert ".. math::" not in page and ":math:" not in page  # none left as raw text
    assert "mathjax" in page.lower()
    assert 'id="jaxmom.sgd"' in page and "Equal to" in page


def test_twins_table_has_every_optimizer(site):
    page = (site / "twins.html").read_text()
    stated = {n for n in public_names(jaxmom) if "Equal to" in (getattr(jaxmom, n).__doc__ or "")}
    assert {"sgd", "sutskever_sgd", "ema_sgd", "adagrad", "adadelta", "rmsprop", "adam"} <= stated
    for name in stated - {n for n in stated if n.startswith(("scale_by_", "add_"))}:
        assert f'href="api/optimizers.html#jaxmom.{name}"' in page, name
    assert "torch.optim.Adam" in page
    assert "no twin stated" not in page  # every optimizer in the table states its twins


def test_a_reference_to_a_missing_name_fails_the_build(tmp_path):
    page = "# Page\n\n```{eval-rst}\n.. autofunction:: jaxmom.convert_momentum\n```\n\nSee {func}`jaxmom.%s`.\n"
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "index.md").write_text(page % "convert_momentum")
    good = sphinx_build(tmp_path / "good", tmp_path / "good_out")
    assert good.returncode == 0, good.stderr  # the same page with an existing name builds
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.md").write_text(page % "convert_momentums")
    bad = sphinx_build(tmp_path / "bad", tmp_path / "bad_out")
    assert bad.returncode != 0
    assert "jaxmom.convert_momentums" in bad.stderr


def test_a_broken_markdown_example_fails_the_tests(tmp_path):
    (tmp_path / "page.md").write_text("An example:\n\n```python\n>>> 1 + 1\n3\n\n```\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout and "page.md" in result.stdout
