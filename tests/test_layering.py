"""The package's imports run downward only: each module imports from its own layer or
the layers below it, in the order docs/architecture.md gives ("Layers"). Parsed with
ast, so lazy imports inside functions count too, and nothing is imported to check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlx_jina"
# Bottom to top, as in docs/architecture.md. A name is a subpackage or a top-level module.
LAYERS = [
    ["_version", "tasks", "atomic", "cpu_blas", "thread_streams", "arg_values", "closed_pipe"],
    ["models"],
    ["checkpoint"],
    ["retrieval"],
    ["encoding"],
    ["loading"],
    ["corpus", "conversion", "integrations", "server", "index", "login_service"],
    ["cli", "__main__", "__init__"],
]
# Upward imports allowed, (importer, imported) as dotted module names: at most one, each
# named with its reason in docs/architecture.md.
ALLOWED: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    """The layer of `mlx_jina.X...` (the package itself, `mlx_jina`, is its __init__)."""
    part = module.split(".")[1] if "." in module else "__init__"
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to docs/architecture.md and LAYERS")


def _imports(path: Path) -> list[tuple[str, str]]:
    """(this module, imported module) for every import of the package in `path`."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    here = parts[:-1]  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target]
            if not node.module:  # `from . import x`: x may be a module of that package
                targets = [f"{target}.{a.name}" if _exists(target, a.name) else target
                           for a in node.names]  # fmt: skip
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(module, t) for t in targets if t == "mlx_jina" or t.startswith("mlx_jina.")]
    return found


def _exists(package: str, name: str) -> bool:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def _all_imports() -> list[tuple[str, str]]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in _imports(path)]


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted((a, b) for a, b in _all_imports() if _layer(b) > _layer(a) and (a, b) not in ALLOWED)
    assert not upward, "upward imports (see docs/architecture.md, Layers):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in upward
    )


def test_at_most_one_upward_import_is_allowed_and_it_is_documented():
    assert len(ALLOWED) <= 1
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for importer, imported in ALLOWED:
        assert importer in doc and imported in doc


def test_the_layers_are_the_ones_the_docs_give():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    documented = [[name.strip(" `/") for name in row.split("|")[2].split(",")] for row in rows]
    assert documented == LAYERS


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_has_a_layer(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    _layer("mlx_jina." + parts[0] if parts[0] != "__init__" else "mlx_jina")


def test_the_check_sees_lazy_and_relative_imports():
    """The parser itself: a function-level `from ..corpus import x` in a retrieval module."""
    module = PACKAGE / "retrieval" / "store.py"
    edges = _imports(module)
    assert ("mlx_jina.retrieval.store", "mlx_jina.checkpoint.safetensors") in edges
    assert ("mlx_jina.retrieval.store", "mlx_jina._version") in edges  # inside fingerprint()
