"""The README and the documentation pages say only what the code makes: every figure they show or
name is a file that a script, a module or a page's own example writes, and the README's speed
figures are quotes of docs/speed.md, which the benchmark's output fills, not numbers typed apart."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PRODUCERS = [*sorted((ROOT / "experiments").glob("*.py")), *sorted((ROOT / "jaxmom").rglob("*.py"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
INLINE_PNG = re.compile(r"`([\w*.{}/-]+\.png)`")
# "The figure above is `loss_curves.png` from `python3 experiments/mnist.py`" and the like.
PROVENANCE = re.compile(
    r"`([\w.-]+\.png)` from (?:`python3 (experiments/\w+\.py)[^`]*`|the example above)"
)


def written_names() -> set[str]:
    """Every PNG name that code in the repository writes: string literals in the scripts and
    modules (``out / "ema.png"``; f-string fields such as ``heatmap_{stem}.png`` stand for any
    text) and in the pages' ``>>>`` examples (``res.heatmap(..., "grid.png")``)."""
    texts = [p.read_text() for p in PRODUCERS]
    for page in PAGES:
        texts += [line for line in page.read_text().splitlines() if line.lstrip().startswith(">>>")]
    return {m for text in texts for m in re.findall(r"""["']([\w{}.-]+\.png)["']""", text)}


def _pattern(name: str, wildcard: str) -> re.Pattern:
    """``name`` as a regular expression in which each ``wildcard`` part stands for any text."""
    parts = re.split(wildcard, name)
    return re.compile(r"[\w.-]+".join(re.escape(p) for p in parts) + r"\Z")


def is_written(name: str, written) -> bool:
    """``name`` (``*`` stands for any text, as pages write ``heatmap_*.png``) is a name that some
    code writes, compared either way: the page's name matches a written one with its fields
    filled in, or a written name (fields as any text) matches the page's with ``*`` filled in."""
    page = _pattern(name, r"\*")
    for code in written:
        if page.match(re.sub(r"\{[^}]*\}", "x", code)):
            return True
        if _pattern(code, r"\{[^}]*\}").match(name.replace("*", "x")):
            return True
    return False


def prose(page: Path) -> str:
    """The page without its fenced code blocks (a user's own ``"grid.png"`` there is no claim)."""
    return FENCE.sub("", page.read_text())


def test_the_producers_are_found():
    patterns = written_names()
    for name in (
        "ema.png",
        "convergence.png",
        "loss_curves.png",
        "heatmap_train_loss_lr_momentum.png",
    ):
        assert is_written(name, patterns), name
    assert not is_written("nothing_writes_this.png", patterns)


def claims() -> dict[Path, re.Match]:
    """For each figure shown under a name no code writes, what the page right after it says it
    is ("The figure above is `loss_curves.png` from `python3 experiments/mnist.py`"), wherever
    it is shown: a statement on one page covers the same file shown on another."""
    found = {}
    for page in PAGES:
        text = prose(page)
        for image in IMAGE.finditer(text):
            claim = PROVENANCE.search(text, image.end(), image.end() + 400)
            if claim is not None:
                found[(page.parent / image[1]).resolve()] = claim
    return found


def test_every_figure_shown_is_a_file_that_code_writes():
    patterns, stated, problems = written_names(), claims(), []
    for page in PAGES:
        text = prose(page)
        for shown in IMAGE.findall(text):
            path = (page.parent / shown).resolve()
            if not path.is_file():
                problems.append(f"{page.name}: {shown} does not exist")
            elif is_written(path.name, patterns):
                continue
            elif path not in stated:
                problems.append(
                    f"{page.name}: {shown} is written by no code, and no line says whose output it is"
                )
            elif not is_written(stated[path][1], patterns):
                problems.append(
                    f"{page.name}: {shown} is said to be {stated[path][1]}, which no code writes"
                )
            elif stated[path][2] and not (ROOT / stated[path][2]).is_file():
                problems.append(
                    f"{page.name}: {shown} is said to come from {stated[path][2]}, which is gone"
                )
        for named in INLINE_PNG.findall(text):
            if not is_written(Path(named).name, patterns):
                problems.append(f"{page.name}: `{named}` is written by no code")
    assert not problems, "\n".join(problems)


def test_a_figure_that_no_code_writes_is_caught(tmp_path, monkeypatch):
    (tmp_path / "stale.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("![old](stale.png)\n\nA picture, and `gone.png` in the text.\n")
    monkeypatch.setattr(sys.modules[__name__], "PAGES", [page])
    try:
        test_every_figure_shown_is_a_file_that_code_writes()
    except AssertionError as error:
        assert "stale.png is written by no code" in str(error)
        assert "`gone.png` is written by no code" in str(error)
    else:
        raise AssertionError("a figure that no code writes was not caught")


def speed_section(readme: str) -> str:
    return readme.split("\n## Speed\n", 1)[1].split("\n## ", 1)[0]


NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(?:\s*(×|x|%|GiB|MB|GB/s|GFLOP/s|s\b|configs-epochs/s))?"
)


def quoted(number: str, unit: str | None, source: str) -> bool:
    """``number`` (with its unit, where it has one) appears in ``source`` as a number of its own."""
    unit_pattern = r"\s*" + re.escape(unit) if unit else ""
    return re.search(rf"(?<![\w.]){re.escape(number)}(?![\d.]\d){unit_pattern}", source) is not None


def test_the_readme_speed_section_quotes_docs_speed_md():
    speed = (DOCS / "speed.md").read_text()
    section = speed_section((ROOT / "README.md").read_text())
    missing = [
        f"{m[1]}{' ' + m[2] if m[2] else ''}"
        for m in NUMBER.finditer(section)
        if not quoted(m[1], m[2], speed)
    ]
    assert not missing, f"README's Speed section has numbers that docs/speed.md does not: {missing}"
    assert "(docs/speed.md)" in section


def test_the_readme_makes_no_timing_claim_outside_its_speed_section():
    """Seconds and minutes in the README come from docs/speed.md, through the Speed section."""
    readme = prose(ROOT / "README.md")
    outside = readme.replace(speed_section(readme), "")
    claims = re.findall(r"\b\d[\d.,]*\s*(?:s|seconds?|min|minutes?|ms)\b", outside)
    assert not claims, claims


def test_a_number_typed_by_hand_is_caught():
    speed = "| run | 2.16× | 1.39 GiB |"
    assert quoted("2.16", "×", speed) and quoted("1.39", "GiB", speed)
    assert not quoted("2.1", "×", speed) and not quoted("1.4", "GiB", speed)
    assert not quoted("16", None, speed)  # not a part of 2.16
