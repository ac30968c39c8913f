"""Every benchmark that uses MLX imports mlx_jina first, as users do: on Linux mlx_jina
loads the system OpenBLAS before MLX, and a script that imports mlx first silently
multiplies with MLX's bundled reference BLAS (tens of times slower)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
CHILD_IMPORT = re.compile(r"^\s*import (mlx\.core|mlx_jina)\b", re.M)


def imports_in_order(tree: ast.AST) -> list[str]:
    """Top-level module names imported, in order, in the module and in each function."""
    names = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:
            if isinstance(stmt, ast.Import):
                names += [(stmt.lineno, a.name) for a in stmt.names]
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                names.append((stmt.lineno, stmt.module))
    return [name for _, name in sorted(names)]


def mlx_before_mlx_jina(names: list[str]) -> bool:
    for name in names:
        if name == "mlx_jina" or name.startswith("mlx_jina."):
            return False
        if name == "mlx" or name.startswith("mlx."):
            return True
    return False


def test_benchmarks_import_mlx_jina_before_mlx():
    wrong = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        text = path.read_text()
        if mlx_before_mlx_jina(imports_in_order(ast.parse(text))):
            wrong.append(str(path.relative_to(BENCHMARKS)))
        for code in re.findall(r'"""(.*?)"""', text, re.S):  # child-process code
            found = [m.group(1) for m in CHILD_IMPORT.finditer(code)]
            found += ["mlx.core"] * ("import mlx.core as mx, mlx_jina" in code)
            if found and found[0] == "mlx.core":
                wrong.append(f"{path.relative_to(BENCHMARKS)} (child code)")
    assert wrong == []


def test_the_check_sees_both_orders():
    assert mlx_before_mlx_jina(imports_in_order(ast.parse("import mlx.core\nimport mlx_jina")))
    assert not mlx_before_mlx_jina(imports_in_order(ast.parse("import mlx_jina\nimport mlx")))
