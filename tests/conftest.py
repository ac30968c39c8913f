"""Shared fixtures: tiny random checkpoints in Jina's published layouts, and the tiny
models loaded from them.

Every checkpoint fixture returns the Path of a model folder and is built once per
session, lazily (a test that does not ask for it does not pay for it). The builders live
in tests/builders/ (numpy only: tokenizers.py, layouts.py; reference.py is the torch
reference, imported on first use).

Markers (declared in pyproject.toml): a test that computes the transformers + peft
reference carries ``reference`` and is skipped, with the install line, where torch,
transformers or peft is missing; ``pytest -m "not reference"`` is the quick loop. Test
modules that need an optional extra are listed in EXTRA_MODULES: where the extra is not
installed they are not collected (the header says which), and their tests carry the
extra's marker.

Tokenizers
    qwen_tokenizer, llama_tokenizer  real tokenizer.json files (skip if not installed)
    tiny_tokenizer                   byte-level BPE, no specials added (like Qwen's)
    tiny_tokenizer_eos               same, appends <|eos|> (id 2)
    tiny_tokenizer_bos_eos           same, <|bos|> (1) in front, <|eos|> (2) at the end

Base repos, layout (a); float32 unless named otherwise
    tiny_qwen_base        qwen3, tiny_tokenizer_eos, 4q/2kv heads, r 4 / alpha 8,
                          rope_parameters form
    tiny_eurobert_base    eurobert, tiny_tokenizer_bos_eos, 4/4 heads, r 4 / alpha 8,
                          top-level rope_theta
    qwen_base_odd         qwen3, tiny_tokenizer, 3q/1kv, head_dim 16 (q_proj 48 rows,
                          hidden 64), r 4 / alpha 12, top-level rope_theta
    eurobert_base_gqa     eurobert, tiny_tokenizer, 4q/2kv, r 8 / alpha 4,
                          rope_scaling {"type": "linear", "factor": 1.0}
    tiny_qwen_rslora      qwen3, tiny_tokenizer, use_rslora (scale 8 / sqrt(4) = 4)
    tiny_eurobert_base_bf16  tiny_eurobert_base's weights, bfloat16 files
    qwen_base             qwen3, real Qwen tokenizer, vocab 151,936, hidden 32
    eurobert_base         eurobert, real Llama-3 tokenizer, vocab 128,256, hidden 32,
                          top-level rope_theta

Derived layouts, for task MERGED_TASKS[arch] ("retrieval" for qwen3, "text-matching"
for eurobert), each from its {prefix}_base, prefix in DERIVED_PREFIXES (tiny_qwen,
tiny_eurobert, qwen, eurobert), one fixture per prefix and layout, made in a loop:
    {prefix}_merged       (b) merged per-task repo, the base's dtype
    {prefix}_mlx_task     (c) per-task -mlx; float32 for qwen3, float16 for eurobert
    {prefix}_mlx_unified  (d) unified -mlx, float16; adapter_config.json kept for qwen3,
                          left out for eurobert

make_checkpoint(builder, *args, **kwargs) -> Path
    any other variant: builder(new_folder, *args, **kwargs), cached per argument list

Loaded models, mlx_jina Embedders, once per test module
    qwen                  tiny_qwen_base, task "retrieval"
    qwen_for(task)        tiny_qwen_base for any task, one Embedder per task (qwen is
                          qwen_for("retrieval"))
    nano                  tiny_eurobert_base, task "retrieval"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import importlib.util

import mlx_jina  # first, as users do: on Linux MLX then multiplies with OpenBLAS
import pytest

from builders.layouts import (
    MERGED_TASKS,
    build_base,
    build_merged,
    build_mlx_task,
    build_mlx_unified,
)
from builders.tokenizers import (
    LLAMA_TOKENIZER,
    LLAMA_TOKENIZER_PIP,
    QWEN_TOKENIZER,
    QWEN_TOKENIZER_PIP,
    tiny_tokenizer_json,
)


REFERENCE_STACK = ("torch", "transformers", "peft")
REFERENCE_PIP = "pip install -e '.[test]'"
# extra -> (the modules it brings, the test modules that need it)
EXTRA_MODULES = {
    "server": (
        ("starlette", "uvicorn", "prometheus_client", "httpx", "openai"),
        (
            "test_server.py",
            "test_server_abuse.py",
            "test_server_clients.py",
            "test_server_ollama.py",
            "test_server_soak.py",
            "test_server_models.py",
            "test_server_model_specs.py",
            "test_server_tei.py",
            "test_worker.py",
            "test_unix_socket.py",
            "test_login_service.py",
        ),
    ),
    "integrations": (
        ("langchain_core", "llama_index.core", "chromadb", "langchain_openai"),
        ("test_integrations.py", "test_readme_integrations.py"),
    ),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _missing_extras() -> dict[str, list[str]]:
    """Extra -> its modules that are not installed here (extras fully present left out)."""
    missing = {}
    for extra, (modules, _) in EXTRA_MODULES.items():
        if absent := [m for m in modules if not _installed(m)]:
            missing[extra] = absent
    return missing


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for extra, absent in _missing_extras().items():
        files = ", ".join(EXTRA_MODULES[extra][1])
        lines.append(
            f"not collected, extra {extra!r} missing ({', '.join(absent)}): {files}; "
            f"pip install -e '.[test]'"
        )
    if absent := [m for m in REFERENCE_STACK if not _installed(m)]:
        lines.append(f"reference tests skipped, missing {', '.join(absent)}: {REFERENCE_PIP}")
    return lines


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    missing = _missing_extras()
    for extra, (_, files) in EXTRA_MODULES.items():
        if extra in missing and collection_path.name in files:
            return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for extra, (_, files) in EXTRA_MODULES.items():
            if item.path.name in files:
                item.add_marker(getattr(pytest.mark, extra))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("reference"):
        if absent := [m for m in REFERENCE_STACK if not _installed(m)]:
            pytest.skip(f"needs the reference stack ({', '.join(absent)}): {REFERENCE_PIP}")
    for extra, absent in _missing_extras().items():
        if item.get_closest_marker(extra):
            pytest.skip(f"needs the {extra} extra ({', '.join(absent)}): {REFERENCE_PIP}")


def _folder(factory: pytest.TempPathFactory, name: str) -> Path:
    return factory.mktemp(name, numbered=True)


# ---------------------------------------------------------------------------
# tokenizers


@pytest.fixture(scope="session")
def qwen_tokenizer() -> Path:
    if QWEN_TOKENIZER is None:
        pytest.skip(f"real Qwen tokenizer not installed: {QWEN_TOKENIZER_PIP}")
    return QWEN_TOKENIZER


@pytest.fixture(scope="session")
def llama_tokenizer() -> Path:
    if LLAMA_TOKENIZER is None:
        pytest.skip(f"real Llama-3 tokenizer not installed: {LLAMA_TOKENIZER_PIP}")
    return LLAMA_TOKENIZER


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer_json(_folder(tmp_path_factory, "tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tiny_tokenizer_eos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _folder(tmp_path_factory, "tok_eos") / "tokenizer.json"
    return tiny_tokenizer_json(path, add_eos=True)


@pytest.fixture(scope="session")
def tiny_tokenizer_bos_eos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _folder(tmp_path_factory, "tok_bos_eos") / "tokenizer.json"
    return tiny_tokenizer_json(path, add_bos=True, add_eos=True)


# ---------------------------------------------------------------------------
# base repos, layout (a)


@pytest.fixture(scope="session")
def tiny_qwen_base(tmp_path_factory, tiny_tokenizer_eos) -> Path:
    root = _folder(tmp_path_factory, "tiny_qwen_base")
    return build_base(root, "qwen3", tokenizer=tiny_tokenizer_eos, seed=0)


@pytest.fixture(scope="session")
def tiny_eurobert_base(tmp_path_factory, tiny_tokenizer_bos_eos) -> Path:
    root = _folder(tmp_path_factory, "tiny_eurobert_base")
    return build_base(
        root, "eurobert", tokenizer=tiny_tokenizer_bos_eos, seed=1, rope_form="top"
    )


@pytest.fixture(scope="session")
def qwen_base_odd(tmp_path_factory, tiny_tokenizer) -> Path:
    root = _folder(tmp_path_factory, "qwen_base_odd")
    heads = dict(num_attention_heads=3, num_key_value_heads=1, head_dim=16)
    return build_base(
        root,
        "qwen3",
        tokenizer=tiny_tokenizer,
        seed=2,
        rope_form="top",
        r=4,
        lora_alpha=12,
        config_overrides=heads,
    )


@pytest.fixture(scope="session")
def eurobert_base_gqa(tmp_path_factory, tiny_tokenizer) -> Path:
    root = _folder(tmp_path_factory, "eurobert_base_gqa")
    heads = dict(num_attention_heads=4, num_key_value_heads=2)
    return build_base(
        root,
        "eurobert",
        tokenizer=tiny_tokenizer,
        seed=3,
        rope_form="top-linear",
        r=8,
        lora_alpha=4,
        config_overrides=heads,
    )


@pytest.fixture(scope="session")
def tiny_qwen_rslora(tmp_path_factory, tiny_tokenizer) -> Path:
    root = _folder(tmp_path_factory, "tiny_qwen_rslora")
    return build_base(
        root,
        "qwen3",
        tokenizer=tiny_tokenizer,
        seed=4,
        r=4,
        lora_alpha=8,
        use_rslora=True,
    )


@pytest.fixture(scope="session")
def tiny_eurobert_base_bf16(tmp_path_factory, tiny_tokenizer_bos_eos) -> Path:
    root = _folder(tmp_path_factory, "tiny_eurobert_base_bf16")
    return build_base(
        root,
        "eurobert",
        tokenizer=tiny_tokenizer_bos_eos,
        seed=1,
        rope_form="top",
        dtype="bfloat16",
    )


@pytest.fixture(scope="session")
def qwen_base(tmp_path_factory, qwen_tokenizer) -> Path:
    root = _folder(tmp_path_factory, "qwen_base")
    return build_base(
        root,
        "qwen3",
        tokenizer=qwen_tokenizer,
        seed=5,
        config_overrides={"hidden_size": 32},
    )


@pytest.fixture(scope="session")
def eurobert_base(tmp_path_factory, llama_tokenizer) -> Path:
    root = _folder(tmp_path_factory, "eurobert_base")
    return build_base(
        root,
        "eurobert",
        tokenizer=llama_tokenizer,
        seed=6,
        rope_form="top",
        config_overrides={"hidden_size": 32},
    )


# ---------------------------------------------------------------------------
# derived layouts (b), (c), (d): one session fixture per prefix and layout

DERIVED_PREFIXES = {  # {prefix}_base -> its arch
    "tiny_qwen": "qwen3",
    "tiny_eurobert": "eurobert",
    "qwen": "qwen3",
    "eurobert": "eurobert",
}


def _merged(root: Path, base: Path, arch: str) -> Path:
    """(b) merged repo for MERGED_TASKS[arch], the base's dtype"""
    return build_merged(root, base, MERGED_TASKS[arch])


def _mlx_task(root: Path, base: Path, arch: str) -> Path:
    """(c) -mlx for MERGED_TASKS[arch], float32 for qwen3, float16 for eurobert"""
    dtype = "float32" if arch == "qwen3" else "float16"
    return build_mlx_task(root, base, MERGED_TASKS[arch], dtype=dtype)


def _mlx_unified(root: Path, base: Path, arch: str) -> Path:
    """(d) unified -mlx, float16, adapter_config.json kept for qwen3 only"""
    return build_mlx_unified(root, base, with_adapter_config=arch == "qwen3")


DERIVED_LAYOUTS = {
    "merged": _merged,
    "mlx_task": _mlx_task,
    "mlx_unified": _mlx_unified,
}


def _derived_fixture(prefix: str, arch: str, layout: str) -> Callable[..., Path]:
    """The session fixture ``{prefix}_{layout}``, built from ``{prefix}_base``."""
    name = f"{prefix}_{layout}"
    build = DERIVED_LAYOUTS[layout]

    def fixture(
        tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
    ) -> Path:
        base = request.getfixturevalue(f"{prefix}_base")
        return build(_folder(tmp_path_factory, name), base, arch)

    fixture.__name__ = fixture.__qualname__ = name
    fixture.__doc__ = f"{prefix}_base ({arch}) as {build.__doc__}."
    return pytest.fixture(fixture, scope="session", name=name)


for _prefix, _arch in DERIVED_PREFIXES.items():
    for _layout in DERIVED_LAYOUTS:
        globals()[f"{_prefix}_{_layout}"] = _derived_fixture(_prefix, _arch, _layout)


# ---------------------------------------------------------------------------
# any other checkpoint


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory) -> Callable[..., Path]:
    """``make_checkpoint(builder, *args, **kwargs)`` calls ``builder(new_folder, *args,
    **kwargs)`` once per distinct argument list in the session and returns the folder.

    Example: ``make_checkpoint(build_base, "qwen3", tokenizer=tok, r=2, lora_alpha=3)``.
    """
    cache: dict[str, Path] = {}

    def make(builder: Callable[..., Path], *args: Any, **kwargs: Any) -> Path:
        key = repr((builder.__name__, args, sorted(kwargs.items())))
        if key not in cache:
            root = _folder(tmp_path_factory, builder.__name__)
            cache[key] = builder(root, *args, **kwargs)
        return cache[key]

    return make


# ---------------------------------------------------------------------------
# loaded models, once per test module (mlx_jina is imported inside the fixtures: the
# builders' own tests, test_checkpoints.py, run without it)


@pytest.fixture(scope="module")
def qwen_for(tiny_qwen_base) -> Callable[[str], Any]:
    """``qwen_for(task)``: tiny_qwen_base loaded for ``task``, one Embedder per task."""
    cache: dict[str, Any] = {}

    def get(task: str) -> Any:
        if task not in cache:
            cache[task] = mlx_jina.load(tiny_qwen_base, task=task)
        return cache[task]

    return get


@pytest.fixture(scope="module")
def qwen(qwen_for) -> Any:
    """tiny_qwen_base loaded for "retrieval" (the adapter merged)."""
    return qwen_for("retrieval")


@pytest.fixture(scope="module")
def nano(tiny_eurobert_base) -> Any:
    """tiny_eurobert_base loaded for "retrieval" (the adapter merged)."""
    return mlx_jina.load(tiny_eurobert_base, task="retrieval")
