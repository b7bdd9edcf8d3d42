"""The test suite's own layout: shared pieces live in helper modules, never in another test file."""

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_file_imports_another():
    test_files = {p.stem: p for p in TESTS.glob("test_*.py")}
    offenders = {
        name: sorted(imported_modules(path) & set(test_files))
        for name, path in test_files.items()
        if imported_modules(path) & set(test_files)
    }
    assert not offenders, f"test files import other test files: {offenders}"
