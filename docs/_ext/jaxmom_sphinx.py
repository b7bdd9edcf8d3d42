"""Sphinx directives that build jaxmom's API reference and twins table from the package itself.

No hand-kept list of names anywhere:

* ``.. jaxmom-api:: jaxmom.sweep`` documents every public name of a module (its ``__all__`` if it
  has one, else its public functions and classes defined in jaxmom and its UPPER_CASE constants),
  grouped by kind, so a new optimizer appears without editing the docs;
* ``.. jaxmom-modules::`` does the same for every other public module of the package;
* ``.. jaxmom-twins::`` tabulates the "Equal to:" section of every optimizer's docstring.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import textwrap

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles

ROOT = "jaxmom"
MAIN_MODULES = ("jaxmom", "jaxmom.sweep")  # each has its own page
SECTIONS = ("Optimizers", "Building blocks", "States", "Functions", "Classes", "Constants")


def public_names(module, defined_in: str = ROOT) -> list[str]:
    """``__all__``, else the public functions and classes whose defining module is
    ``defined_in`` or below it (not what the module imports from elsewhere), and the module's
    UPPER_CASE constants."""
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        home = getattr(value, "__module__", None) or ""
        ours = home == defined_in or home.startswith(defined_in + ".")
        if (inspect.isfunction(value) or inspect.isclass(value)) and ours:
            names.append(name)
        elif name.isupper() and isinstance(value, (str, int, float, tuple, frozenset)):
            names.append(name)
    return sorted(names)


def public_modules() -> list[str]:
    """Every importable module of the package with no underscore in its dotted name."""
    package = importlib.import_module(ROOT)
    found = [
        info.name
        for info in pkgutil.walk_packages(package.__path__, ROOT + ".")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return sorted(found)


def _returns_transformation(fn) -> bool:
    try:
        annotation = inspect.signature(fn, eval_str=True).return_annotation
    except Exception:  # an annotation that cannot be evaluated here: use its text
        annotation = inspect.signature(fn).return_annotation
    return "GradientTransformation" in str(getattr(annotation, "__name__", annotation))


def _is_namedtuple(value) -> bool:
    return inspect.isclass(value) and issubclass(value, tuple) and hasattr(value, "_fields")


def kind(value, name: str) -> str:
    """The section of the API page that a public name belongs in."""
    if inspect.isclass(value):
        return "States" if _is_namedtuple(value) and name.endswith("State") else "Classes"
    if callable(value):
        if _returns_transformation(value):
            return "Building blocks" if name.startswith(("scale_by_", "add_")) else "Optimizers"
        return "Functions"
    return "Constants"


def api_rst(module_name: str, names: list[str], underline: str) -> list[str]:
    """reStructuredText documenting ``names`` of a module: a summary table and entries per kind."""
    module = importlib.import_module(module_name)
    groups: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for name in names:
        groups[kind(getattr(module, name), name)].append(name)
    lines = [f".. currentmodule:: {module_name}", ""]
    titled = sum(1 for members in groups.values() if members) > 1  # one kind: the page's title
    for section, members in groups.items():
        if not members:
            continue
        if titled:
            lines += [section, underline * len(section), ""]
        lines += [".. autosummary::", ""]
        lines += [f"   {n}" for n in members] + [""]
        for name in members:
            if inspect.isclass(getattr(module, name)):  # a NamedTuple's fields are in its signature
                members = [] if _is_namedtuple(getattr(module, name)) else ["   :members:"]
                lines += [f".. autoclass:: {name}", *members, ""]
            elif section == "Constants":
                lines += [f".. autodata:: {name}", ""]
            else:
                lines += [f".. autofunction:: {name}", ""]
    return lines


class _RstDirective(SphinxDirective):
    def parse(self, lines: list[str], source: str) -> list[nodes.Node]:
        parent = nodes.section()  # a throwaway parent; its children are returned
        nested_parse_with_titles(self.state, StringList(lines, source), parent)
        return parent.children


class ApiDirective(_RstDirective):
    """``.. jaxmom-api:: MODULE``: the module's public API, one section per kind; with
    ``:kinds: Optimizers, States``, only those sections."""

    required_arguments = 1
    option_spec = {"kinds": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        module = importlib.import_module(name)
        names = public_names(module)
        if "kinds" in self.options:
            wanted = [k.strip() for k in self.options["kinds"].split(",")]
            unknown = sorted(set(wanted) - set(SECTIONS))
            if unknown:
                raise self.error(f"unknown kinds {unknown}; known: {SECTIONS}")
            names = [n for n in names if kind(getattr(module, n), n) in wanted]
        return self.parse(api_rst(name, names, "-"), "<jaxmom-api>")


class ModulesDirective(_RstDirective):
    """``.. jaxmom-modules::``: every public module other than jaxmom and jaxmom.sweep."""

    def run(self) -> list[nodes.Node]:
        lines = []
        for name in public_modules():
            if name in MAIN_MODULES:
                continue
            module = importlib.import_module(name)
            top = set(public_names(importlib.import_module(ROOT)))
            names = [n for n in public_names(module, defined_in=name) if n not in top]
            title = f"``{name}``"
            lines += [title, "-" * len(title), "", f".. automodule:: {name}", "   :no-members:", ""]
            lines += api_rst(name, names, "~")
        return self.parse(lines, "<jaxmom-modules>")


def docstring_section(doc: str | None, title: str) -> str | None:
    """The body of a Google-style docstring section such as "Equal to:", dedented; or, for a
    one-paragraph "Equal to ``x``." sentence, the rest of that paragraph; else None."""
    lines = inspect.cleandoc(doc or "").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(" ") or not line.startswith(title):
            continue
        rest = line[len(title) :]
        if rest.strip() == ":":  # a section: the indented lines that follow
            body = []
            for following in lines[i + 1 :]:
                if following.strip() and not following.startswith(" "):
                    break
                body.append(following)
            return textwrap.dedent("\n".join(body)).strip()
        if rest.startswith(" "):  # a sentence: up to the paragraph's end
            paragraph = [rest.strip()]
            for following in lines[i + 1 :]:
                if not following.strip():
                    break
                paragraph.append(following.strip())
            return " ".join(paragraph)
    return None


class TwinsDirective(_RstDirective):
    """``.. jaxmom-twins::``: a table of each optimizer and its docstring's "Equal to:" section."""

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(ROOT)
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 18 82", ""]
        lines += ["   * - optimizer", "     - equal to (from its docstring)", ""]
        for name in public_names(module):
            value = getattr(module, name)
            if kind(value, name) != "Optimizers":
                continue
            body = docstring_section(value.__doc__, "Equal to") or "no twin stated"
            first, *rest = body.splitlines()
            lines += [f"   * - :func:`~{ROOT}.{name}`", f"     - {first}"]
            lines += [f"       {line}" if line.strip() else "" for line in rest] + [""]
        return self.parse(lines, "<jaxmom-twins>")


def _exists(dotted: str) -> bool:
    """Whether ``dotted`` names a module or an attribute of one that can be imported."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def resolve_private_path(app, env, node, contnode):
    """Resolve what the Python domain cannot, for jaxmom names only:

    * ``jaxmom._adam.ScaleByAdamState`` (a signature names the defining module) links to the
      public entry of the same name;
    * a name that exists but has no entry (a private helper) is shown unlinked;
    * a name that does not exist is left unresolved: it warns, so it fails the build under -W.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith(ROOT + "."):
        return None
    objects = env.get_domain("py").objects
    public = ".".join(p for p in target.split(".") if not p.startswith("_"))
    short = target.rsplit(".", 1)[-1]
    for candidate in (public, *(f"{m}.{short}" for m in MAIN_MODULES)):
        if candidate != target and candidate in objects:
            entry = objects[candidate]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, candidate
            )
    return contnode if _exists(target) else None


@functools.cache
def _type_aliases() -> list[tuple[str, str]]:
    """(expanded text, short name) for the unions that make signatures unreadable, longest first:
    ``jax.typing.ArrayLike`` stringifies as eight alternatives, an Optax schedule as 17."""
    import jax
    import optax
    from sphinx.util.typing import stringify_annotation

    aliases = {"~optax.Schedule": optax.Schedule, "~jax.typing.ArrayLike": jax.typing.ArrayLike}
    pairs = [
        (stringify_annotation(value, mode), short)
        for short, value in aliases.items()
        for mode in ("smart", "fully-qualified-except-typing")
    ]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def shorten_signature(app, what, name, obj, options, signature, return_annotation):
    """Write ``ArrayLike`` and ``Schedule`` in signatures instead of their expanded unions."""
    if signature is None:
        return None
    for expanded, short in _type_aliases():
        signature = signature.replace(expanded, short)
    return signature, return_annotation


def trim_code_blocks(app, doctree):
    """Drop the blank line that ends each Markdown ``>>>`` block. It is there for doctest, which
    would otherwise read the closing fence as part of the expected output."""
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if text != text.rstrip() and block.rawsource == text:  # not a parsed literal
            block.rawsource = text.rstrip()
            block.children = [nodes.Text(block.rawsource)]


def always_outdated(app, env, added, changed, removed):
    """The generated pages read the package, not their source file: re-read them every build."""
    return [d for d in env.found_docs if d.startswith("api") or d == "twins"]


def setup(app):
    app.add_directive("jaxmom-api", ApiDirective)
    app.add_directive("jaxmom-modules", ModulesDirective)
    app.add_directive("jaxmom-twins", TwinsDirective)
    app.connect("missing-reference", resolve_private_path)
    app.connect("autodoc-process-signature", shorten_signature)
    app.connect("env-get-outdated", always_outdated)
    app.connect("doctree-read", trim_code_blocks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
