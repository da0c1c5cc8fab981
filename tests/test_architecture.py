"""The shape of the package, checked: its layers, the size of its pieces, where it imports.

The layers themselves (each imports only the ones below it, no cycles) are import-linter's
contracts in ``setup.cfg``, run here and by ``make test``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"
MODULES = sorted(PACKAGE.rglob("*.py"))
#: Third-party packages a module may import inside a function: optional dependencies.
OPTIONAL = ("torchvision", "torch.utils.tensorboard", "sklearn", "rdkit")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from its ``def`` to its end, its docstring not counted."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_is_at_most_600_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_function_is_at_most_80_lines_of_code(path):
    long = {
        f.name: _code_lines(f)
        for f in _functions(ast.parse(path.read_text()))
        if _code_lines(f) > MAX_FUNCTION_LINES
    }
    assert not long


def test_fits_body_reads_in_one_screen():
    tree = ast.parse((PACKAGE / "training" / "loop.py").read_text())
    fit = next(f for f in _functions(tree) if f.name == "fit")
    body = fit.body[1:]  # after the docstring
    assert body[-1].end_lineno - body[0].lineno + 1 < 60


@pytest.mark.parametrize("path", [m for m in MODULES if "cli" not in m.parts], ids=_name)
def test_imports_inside_functions_are_only_optional_dependencies(path):
    # The layers are only true if every import is where a reader looks for it; the
    # command line alone imports lazily, to start fast.
    inside = []
    for function in _functions(ast.parse(path.read_text())):
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            inside += [n for n in names if not n.startswith(OPTIONAL)]
    assert not inside


def test_the_layers_contract_holds():
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter is not None, "import-linter is a development dependency: pip install -e .[dev]"
    result = subprocess.run(
        [linter, "--config", str(PACKAGE.parent / "setup.cfg")],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_the_layers_contract_lists_no_exemption():
    config = (PACKAGE.parent / "setup.cfg").read_text()
    section = config[config.index("[importlinter]") :]
    assert "ignore_imports" not in section and "exhaustive = true" in section
