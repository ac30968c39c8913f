"""The package's shape: one home per concept, small files, a CLI that starts without MLX.

Run: python -m pytest tests/test_layout.py -q
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlx_jina

PACKAGE = Path(mlx_jina.__file__).parent


@pytest.fixture
def toy(tiny_qwen_merged, tmp_path):
    """tiny_qwen_merged's weights under the toy backbone's model_type; registered for the
    test only."""
    from mlx_jina.models import BACKBONES

    import toy_backbone

    folder = tmp_path / "toy"
    shutil.copytree(tiny_qwen_merged, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = toy_backbone.BACKBONE.model_type
    (folder / "config.json").write_text(json.dumps(config))
    yield folder
    BACKBONES.pop(toy_backbone.BACKBONE.model_type)


def test_a_new_backbone_has_one_home(toy, tiny_qwen_merged):
    """Registering one Backbone (tests/toy_backbone.py) is all a new architecture takes:
    load() builds it, encode() pads and masks it as bidirectional, info() describes it."""
    from mlx_jina.checkpoint.facts import model_facts

    model = mlx_jina.load(toy)
    assert model.model.backbone.model_type == "toy_bidir_qwen3"
    texts = ["a short one", "a much longer text than the first one, padded beside it"]
    together = model.encode(texts)
    alone = np.stack([model.encode(t) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # the padding mask is right
    # Bidirectional: a later token changes an earlier position's state.
    ids = model.tokenize(["a b c d"])[0]
    changed = ids[:-1] + [ids[-1] + 1]
    h = np.array(model.model(mx_ids([ids, changed]), np.array([len(ids)] * 2)))
    assert not np.allclose(h[0, 0], h[1, 0], atol=1e-4)
    causal = mlx_jina.load(tiny_qwen_merged).encode(texts)  # same weights, causal
    assert (np.sum(together * causal, axis=1) < 0.999).all()
    facts = model_facts(str(toy))
    assert (facts["backbone"], facts["attention"]) == ("toy_bidir_qwen3", "bidirectional")


def mx_ids(rows):
    import mlx.core as mx

    return mx.array(rows)


@pytest.mark.parametrize("argv", [["--help"], ["embed", "--help"], ["serve", "--help"],
                                  ["info", "--help"], ["convert", "--help"]])
def test_help_does_not_import_mlx(argv):
    """`mlx-jina --help` promised to stay fast, yet imported MLX through the package."""
    script = (
        "import sys\n"
        "from mlx_jina.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'mlx' or m.startswith('mlx.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert "usage: mlx-jina" in proc.stdout


def test_import_does_not_load_mlx_until_used():
    script = (
        "import sys, mlx_jina\n"
        "print('mlx.core' in sys.modules)\n"
        "mlx_jina.Embedder\n"
        "print('mlx.core' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout
    assert out.split() == ["False", "True"]


def python_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_files_and_functions_stay_small():
    """No module over 400 lines, no function over 60 (tables of data are not functions)."""
    long_files = [f"{p.relative_to(PACKAGE)}: {n}" for p in python_files()
                  if (n := len(p.read_text().splitlines())) > 400]
    long_functions = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} {n}")
    assert long_files == [] and long_functions == []


def test_each_task_name_is_spelled_in_one_module():
    """The task names lived in six places; now tasks.py is the only one."""
    for name in ("text-matching", "retrieval.query", "retrieval.passage", '"classification"'):
        homes = [p.relative_to(PACKAGE).as_posix() for p in python_files() if name in p.read_text()]
        assert homes == ["tasks.py"], (name, homes)


@pytest.mark.server
def test_serve_flag_defaults_are_the_limits_defaults():
    """The CLI spells the server's limits for --help without importing the server; they
    must stay the defaults of mlx_jina.server.Limits."""
    from dataclasses import asdict

    from mlx_jina.cli import LIMITS, build_parser
    from mlx_jina.server import Limits

    args = build_parser().parse_args(["serve", "-m", "x"])
    assert {name: getattr(args, name) for name in LIMITS} == {
        name: value for name, value in asdict(Limits()).items() if name in LIMITS
    }
    assert set(LIMITS) == set(asdict(Limits()))
