"""MLX's Linux CPU wheel multiplies with its bundled reference BLAS; importing mlx_jina
first puts the system's OpenBLAS in its place. Every check runs in a
fresh interpreter: which BLAS MLX binds is decided once, when mlx.core is imported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlx_jina import cpu_blas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CPU wheel only")
OPENBLAS = cpu_blas._find_openblas()
needs_openblas = pytest.mark.skipif(
    OPENBLAS is None, reason=f"no system OpenBLAS here ({cpu_blas.RECIPE})"
)

# In the child: which BLAS libraries are mapped, what mlx_jina says, and a product
# computed by MLX next to the same inputs (numpy checks it in float64 here).
PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    {imports}
import mlx.core as mx
from mlx_jina import cpu_blas
maps = open("/proc/self/maps").read()
a = mx.random.normal((96, 256), key=mx.random.key(1))
b = mx.random.normal((256, 80), key=mx.random.key(2))
c = a @ b
mx.eval(c)
import numpy as np
print(json.dumps({{
    "openblas": "libopenblas" in maps, "reference": "mlx_cpu.libs/libblas" in maps,
    "describe": cpu_blas.describe(), "warnings": [str(w.message) for w in caught],
    "a": np.array(a).tolist(), "b": np.array(b).tolist(), "c": np.array(c).tolist(),
}}))
"""


def probe(imports: str = "import mlx_jina", **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("MLX_JINA_BLAS", "LD_PRELOAD")}
    code = PROBE.format(imports=imports)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    a, b, c = (np.array(out.pop(k), dtype=np.float64) for k in "abc")
    out["error"] = float(np.abs(c - a @ b).max())  # against numpy in float64
    return out


@needs_openblas
def test_importing_mlx_jina_first_makes_mlx_multiply_with_openblas():
    out = probe()
    assert out["openblas"] and OPENBLAS in out["describe"] and "loaded by mlx_jina" in out["describe"]
    assert out["error"] < 1e-3 and out["warnings"] == []


def test_reference_keeps_mlx_own_blas():
    out = probe(MLX_JINA_BLAS="reference")
    assert not out["openblas"] and out["reference"]
    assert out["describe"] == "reference, as MLX_JINA_BLAS asks"
    assert out["error"] < 1e-3


@needs_openblas
def test_explicit_path_and_ld_preload_are_both_honoured():
    explicit = probe(MLX_JINA_BLAS=OPENBLAS)
    assert explicit["openblas"] and explicit["describe"].startswith(OPENBLAS)
    preloaded = probe(LD_PRELOAD=OPENBLAS)
    assert preloaded["openblas"] and preloaded["describe"] == f"{OPENBLAS} (LD_PRELOAD)"
    assert max(explicit["error"], preloaded["error"]) < 1e-3


@needs_openblas
def test_mlx_imported_first_warns_with_the_fix():
    """Too late to swap the BLAS: say so, with both fixes, instead of staying silently slow."""
    out = probe("import mlx.core\n    import mlx_jina")
    assert not out["openblas"] and out["reference"]
    (message,) = out["warnings"]
    assert "reference BLAS" in message and f"LD_PRELOAD={OPENBLAS}" in message
    assert "Import mlx_jina first" in message and "MLX_JINA_BLAS=reference" in message


@pytest.mark.parametrize(
    "value, error, words",
    [
        ("/no/such/libblas.so", FileNotFoundError, ["'/no/such/libblas.so'", "no such file", "auto"]),
        ("refrence", FileNotFoundError, ["'refrence'", "'reference'"]),  # a typo is a path
        (__file__, ValueError, ["cannot be loaded"]),  # not a shared library
        ("libm", ValueError, ["exports no cblas_sgemm"]),  # a library, but no BLAS
    ],
)
def test_a_bad_choice_is_refused_by_name(value, error, words, monkeypatch):
    if value == "libm":
        value = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6",
                                  "/lib64/libm.so.6") if Path(p).exists()), None)
        if value is None:
            pytest.skip("no libm.so.6 at a known path")
    monkeypatch.setattr(cpu_blas, "_state", {"library": None, "how": None})
    monkeypatch.setenv("MLX_JINA_BLAS", value)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with pytest.raises(error) as info:
        cpu_blas.prefer_fast_blas()
    assert all(word in str(info.value) for word in words), str(info.value)


@needs_openblas
def test_vectors_are_the_same_on_either_blas(tiny_qwen_base):
    """The whole model, encode() as users call it: only summation order may differ."""
    code = (
        "import json, mlx_jina\n"
        f"m = mlx_jina.load({str(tiny_qwen_base)!r}, task='retrieval')\n"
        "texts = ['Which planet is red?', 'Mars is red ' * 40, 'x']\n"
        "print(json.dumps(m.encode(texts, prompt_name='document').tolist()))\n"
    )
    vectors = {}
    for choice in ("reference", "auto"):
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**env, "MLX_JINA_BLAS": choice}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        vectors[choice] = np.array(json.loads(proc.stdout))
    cosine = (vectors["reference"] * vectors["auto"]).sum(axis=1)
    assert cosine.min() >= 0.99999 and np.abs(vectors["reference"] - vectors["auto"]).max() < 1e-4
