"""Architecture rules: calls point downward only, and the runtime never needs torch or TensorRT."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["runtime", "planning", "perception", "calibration"]  # each may import only those after it
HEAVY = ("torch", "tensorrt", "pycuda")
# Modules whose whole purpose is torch (nets, training, export); the runtime never imports them at module level.
TORCH_MODULES = {"perception/nets.py", "perception/export.py", "planning/training.py"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at_module_level) for each import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a import b` as a.b: b may be a module (`from runtime import cli`).
            found += [(f"{node.module}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_downward(layer: str) -> None:
    forbidden = set(LAYERS[: LAYERS.index(layer)])
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / layer).rglob("*.py"))
        for module, line, _ in _imports(path)
        if module.split(".")[0] in forbidden
    ]
    assert not offences, "layering violated (runtime -> planning -> perception -> calibration):\n" + "\n".join(offences)


def test_only_the_command_line_imports_the_command_line() -> None:
    """runtime/cli/ parses, calls the library and prints: the library never calls back into it."""
    cli = ROOT / "runtime" / "cli"
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        if cli not in path.parents
        for module, line, _ in _imports(path)
        if module == "runtime.cli" or module.startswith("runtime.cli.")
    ]
    assert not offences, "only runtime/cli/ may import runtime.cli:\n" + "\n".join(offences)


def test_heavy_frameworks_are_imported_lazily() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {module} at module level"
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        for module, line, top in _imports(path)
        if top and module.split(".")[0] in HEAVY and str(path.relative_to(ROOT)) not in TORCH_MODULES
    ]
    assert not offences, "\n".join(offences)


def test_runtime_loop_imports_without_torch() -> None:
    code = ("import sys, runtime.cli.app, runtime.loop, runtime.evaluation.demo; "
            "print(','.join(m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"importing the runtime pulled in: {out.stdout.strip()}"
