"""convert(): merge, quantize, write the per-task -mlx layout, report quality, upload.

Run: python -m pytest tests/test_convert.py -q   (add -s to see the quality tables)
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mlx_jina
from _quantize_fixtures import cosines, dequantized_state, float_folder
from builders.files import read_safetensors
from builders.layouts import TASKS
from builders.reference import merged_state_dict, reference_embeddings
from mlx_jina.conversion import quality
from mlx_jina.conversion import QUALITY_FILE, configure_parser, main

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "机器学习 模型 文本 向量",
    "Paris is the capital and largest city of France. " * 6,
]


@pytest.mark.reference
@pytest.mark.parametrize(
    "fixture,task",
    [("tiny_qwen_base", "retrieval"), ("eurobert_base_gqa", "clustering")],
)
def test_merge_equals_peft_merge_and_unload(request, tmp_path, fixture, task):
    """The written float32 weights are peft's merge_and_unload to within 1e-5."""
    base = request.getfixturevalue(fixture)
    dst = mlx_jina.convert(str(base), str(tmp_path / "out"), task=task, dtype="float32")
    got = {
        k.removeprefix("model."): v
        for k, v in read_safetensors(dst / "model.safetensors").items()
    }
    want = merged_state_dict(base, task)
    assert set(got) == set(want)
    worst = max(np.abs(got[k].astype(np.float32) - want[k].numpy()).max() for k in want)
    assert worst <= 1e-5
    # and the LoRA really changed something, so the comparison can fail
    plain = read_safetensors(base / "model.safetensors")
    assert (
        np.abs(
            got["layers.0.self_attn.q_proj.weight"]
            - plain["layers.0.self_attn.q_proj.weight"]
        ).max()
        > 1e-2
    )


@pytest.mark.reference
def test_float_output_layout_and_config(tiny_qwen_base, tmp_path):
    """Jina's per-task -mlx files, a config with the mlx_jina block and no quantization
    block, a CC BY-NC 4.0 model card, and a folder that loads as that task."""
    dst = mlx_jina.convert(
        str(tiny_qwen_base), str(tmp_path / "out"), task="text-matching"
    )
    names = {p.name for p in dst.iterdir()}
    assert names == {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",  # made: the source has none, Swift's loader needs one
        "config_sentence_transformers.json",
        "model.safetensors",
        "README.md",
        "1_Pooling",  # MLX Swift's pooling config (test_convert_swift.py)
    }
    config = json.loads((dst / "config.json").read_text())
    assert "quantization" not in config and "auto_map" not in config
    info = config["mlx_jina"]
    assert info["task"] == "text-matching" and info["source"] == tiny_qwen_base.name
    assert info["prompts"] == {"query": "Document: ", "document": "Document: "}
    assert info["dims"] == [32, 64] and info["max_length"] == 32768
    assert all(k.startswith("model.") for k in mx.load(str(dst / "model.safetensors")))
    assert "CC BY-NC 4.0" in (dst / "README.md").read_text()
    model = mlx_jina.load(dst)
    assert model.task == "text-matching"
    want = reference_embeddings(
        tiny_qwen_base, TEXTS, task="text-matching", prompt="Document: "
    )
    assert cosines(model.encode_query(TEXTS), want).min() >= 0.9999


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_qwen_base, tiny_eurobert_base):
    """(arch, bits) -> (folder, base, task): convert -q once per case."""
    cases = {
        ("qwen3", 4): (tiny_qwen_base, "retrieval"),
        ("eurobert", 8): (tiny_eurobert_base, "classification"),
    }
    out = {}
    for (arch, bits), (base, task) in cases.items():
        dst = tmp_path_factory.mktemp(f"{arch}-{bits}bit")
        argv = [
            "--hf-path",
            str(base),
            "--mlx-path",
            str(dst),
            "--task",
            task,
            "-q",
            "--q-bits",
            str(bits),
            "--force",
        ]
        main(argv)
        out[arch, bits] = (dst, base, task)
    return out


@pytest.mark.reference
@pytest.mark.parametrize("case", [("qwen3", 4), ("eurobert", 8)])
def test_quantized_round_trip(converted, tmp_path, case):
    """convert -q writes model-{bits}bit.safetensors and a quantization block; loading it
    gives what its exact numpy-dequantized weights give (cosine >= 0.9999), and 8-bit
    stays within cosine 0.998 of the float reference."""
    dst, base, task = converted[case]
    bits = case[1]
    assert (dst / f"model-{bits}bit.safetensors").exists() and not (
        dst / "model.safetensors"
    ).exists()
    config = json.loads((dst / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": bits, "mode": "affine"}
    assert config["quantization_config"] == config["quantization"]

    model = mlx_jina.load(dst)
    m = model.model
    assert (
        isinstance(m.embed_tokens, nn.QuantizedEmbedding)
        and m.embed_tokens.bits == bits
    )
    assert all(layer.self_attn.q_proj.bits == bits for layer in m.layers)
    assert (
        type(m.layers[0].mlp.down_proj) is nn.Linear
    )  # 96 inputs: not a multiple of 64
    emb = model.encode_query(TEXTS)
    prompt = "Query: " if task == "retrieval" else "Document: "

    tensors = {
        k: np.array(v)
        for k, v in mx.load(str(dst / f"model-{bits}bit.safetensors")).items()
    }
    state = dequantized_state(tensors, bits, 64)
    simulated = reference_embeddings(
        float_folder(tmp_path / "deq", state, base), TEXTS, task=None, prompt=prompt
    )
    assert cosines(emb, simulated).min() >= 0.9999

    exact = reference_embeddings(base, TEXTS, task=task, prompt=prompt)
    vs_float = cosines(emb, exact)
    if bits == 8:
        assert vs_float.min() >= 0.998
    print(f"\n{case}: {bits}-bit vs float32 reference, min cosine {vs_float.min():.4f}")


def test_quality_report_is_written_and_reproducible(converted):
    """The JSON report and the model card hold the numbers convert measured, and
    re-measuring the saved folder against the float model gives them again."""
    rows = []
    for (arch, bits), (dst, base, task) in converted.items():
        report = json.loads((dst / QUALITY_FILE).read_text())
        assert (
            report["texts"] == len(quality.QUERIES) + len(quality.DOCUMENTS) + 2 == 102
        )
        assert report["weights"] == f"{bits}-bit, group 64"
        card = (dst / "README.md").read_text()
        assert quality.markdown_table([report]).splitlines()[-1] in card
        assert "CC BY-NC 4.0" in card
        if bits == 8:
            assert report["min_cosine"] >= 0.998
            again = quality.compare(
                quality.embed_set(mlx_jina.load(base, task=task)),
                quality.embed_set(mlx_jina.load(dst)),
            )
            for key in ("min_cosine", "mean_cosine", "top10_agreement"):
                assert again[key] == pytest.approx(report[key], abs=1e-5)
        rows.append({**report, "weights": f"{arch} tiny, {report['weights']}"})
    print("\n" + quality.markdown_table(rows))


def test_quality_set_covers_languages_and_lengths(tiny_qwen_base):
    """About 100 texts, 5+ scripts/languages, both prompts, short to ~2K-token inputs."""
    assert len(quality.QUERIES) + len(quality.DOCUMENTS) == 100
    assert len(quality.LANGUAGES) >= 5
    model = mlx_jina.load(tiny_qwen_base, task="retrieval")
    queries, documents = quality.texts_for(model)
    lengths = [len(ids) for ids in model.tokenize(queries + documents)]
    assert min(lengths) < 20 and 1900 <= max(lengths) <= 2200
    assert any("\u3040" <= ch <= "\u30ff" for ch in "".join(documents))  # Japanese kana
    assert any(
        "\u4e00" <= ch <= "\u9fff" for ch in "".join(documents)
    )  # CJK ideographs


@pytest.mark.reference
def test_task_all_writes_one_folder_per_task(tiny_eurobert_base, tmp_path):
    """--task all converts every adapter, each folder loading as its own task."""
    root = tmp_path / "all"
    main(
        [
            "--hf-path",
            str(tiny_eurobert_base),
            "--mlx-path",
            str(root),
            "--task",
            "all",
            "--dtype",
            "float32",
        ]
    )
    assert sorted(p.name for p in root.iterdir()) == sorted(TASKS)
    for task in TASKS:
        model = mlx_jina.load(root / task)
        assert model.task == task
        want = reference_embeddings(
            tiny_eurobert_base, TEXTS[:2], task=task, prompt="Document: "
        )
        assert cosines(model.encode_document(TEXTS[:2]), want).min() >= 0.9999


def test_refuses_to_overwrite_without_force(tiny_qwen_base, tmp_path):
    """An existing output folder is left alone unless --force; --force leaves no stale
    weight file or quality report behind."""
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "config.json").write_text('{"mlx_jina": {"task": "retrieval"}}')
    (dst / "model-4bit.safetensors").write_bytes(b"old")
    (dst / QUALITY_FILE).write_text("{}")
    args = dict(hf_path=str(tiny_qwen_base), mlx_path=str(dst), task="retrieval")
    with pytest.raises(ValueError, match=r"already exists.*--force"):
        mlx_jina.convert(**args)
    assert (dst / "model-4bit.safetensors").read_bytes() == b"old"
    mlx_jina.convert(**args, force=True)
    assert not (dst / "model-4bit.safetensors").exists()
    assert not (dst / QUALITY_FILE).exists()
    assert mlx_jina.load(dst).task == "retrieval"


class FakeHubApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, Path(folder_path).name, files))


def test_upload_uses_the_hub_api(tiny_qwen_base, tmp_path):
    """--upload-repo creates the repo and uploads the finished folder (no network)."""
    api = FakeHubApi()
    mlx_jina.convert(
        str(tiny_qwen_base),
        str(tmp_path / "one"),
        task="retrieval",
        upload_repo="me/small-retrieval-mlx",
        api=api,
    )
    assert api.calls[0] == ("create_repo", "me/small-retrieval-mlx", True)
    assert api.calls[1][:3] == ("upload_folder", "me/small-retrieval-mlx", "one")
    assert "model.safetensors" in api.calls[1][3] and "README.md" in api.calls[1][3]
    card = (tmp_path / "one" / "README.md").read_text()
    assert 'mlx_jina.load("me/small-retrieval-mlx")' in card

    api = FakeHubApi()
    mlx_jina.convert(
        str(tiny_qwen_base),
        str(tmp_path / "all"),
        task="all",
        upload_repo="me/small",
        api=api,
    )
    assert [c[1] for c in api.calls if c[0] == "upload_folder"] == [
        f"me/small-{t}" for t in TASKS
    ]


def test_errors(tiny_qwen_base, tiny_qwen_merged, tmp_path, capsys):
    """Bad settings fail early with messages that name the value and the fix."""
    src, out = str(tiny_qwen_base), str(tmp_path / "x")
    with pytest.raises(ValueError, match=r"bits=7 with mode='affine'; affine takes bits"):
        mlx_jina.convert(src, out, task="retrieval", quantize=True, q_bits=7)
    with pytest.raises(ValueError, match=r"group_size=100"):
        mlx_jina.convert(src, out, task="retrieval", quantize=True, q_group_size=100)
    with pytest.raises(
        ValueError, match=r"group_size=128 does not divide the hidden size 64"
    ):
        mlx_jina.convert(src, out, task="retrieval", quantize=True, q_group_size=128)
    with pytest.raises(ValueError, match=r"several tasks; pass task="):
        mlx_jina.convert(src, out)
    with pytest.raises(ValueError, match=r"no adapters/ folder"):
        mlx_jina.convert(str(tiny_qwen_merged), out, task="all")
    with pytest.raises(SystemExit) as e:
        main(["--hf-path", src, "--mlx-path", out, "--task", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--hf-path",
                src,
                "--mlx-path",
                out,
                "--task",
                "retrieval",
                "-q",
                "--q-group-size",
                "48",
            ]
        )
    assert e.value.code == 2 and "group_size=48" in capsys.readouterr().err


def test_already_quantized_source_is_refused(converted, tmp_path):
    """Re-quantizing a 4-bit folder would compound the error; convert says so."""
    dst, _, _ = converted["qwen3", 4]
    with pytest.raises(ValueError, match=r"already quantized"):
        mlx_jina.convert(str(dst), str(tmp_path / "again"), quantize=True)


def test_parser_names_follow_mlx_lm():
    """The flags are mlx-lm's, so `mlx-jina convert` reads like `mlx_lm.convert`."""
    args = configure_parser().parse_args(["--hf-path", "a", "-q", "--q-bits", "8"])
    assert vars(args) == dict(
        hf_path="a",
        mlx_path="mlx_model",
        task=None,
        quantize=True,
        q_bits=8,
        q_group_size=None,  # the mode's default
        q_mode=None,
        q_recipe=None,
        dtype=None,
        revision=None,
        upload_repo=None,
        force=False,
        format="mlx",
        sweep=False,
        sweep_json=None,
    )


def test_top_level_convert_script(tiny_eurobert_base, tmp_path):
    """`python convert.py ...` from a source checkout runs the same converter."""
    dst = tmp_path / "script"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "convert.py"),
            "--hf-path",
            str(tiny_eurobert_base),
            "--mlx-path",
            str(dst),
            "--task",
            "retrieval",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert "[INFO] Wrote" in run.stdout
    assert mlx_jina.load(dst).task == "retrieval"


@pytest.mark.reference
def test_merged_source_and_hub_revision(tiny_qwen_merged, tmp_path):
    """An already merged repo converts as it is, and a Hub-cache snapshot folder records
    its commit as the source revision."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--me--merged" / "snapshots" / sha
    shutil.copytree(tiny_qwen_merged, snapshot)
    dst = mlx_jina.convert(str(snapshot), str(tmp_path / "out"), task="retrieval")
    info = json.loads((dst / "config.json").read_text())["mlx_jina"]
    assert info["revision"] == sha and info["task"] == "retrieval"
    want = reference_embeddings(tiny_qwen_merged, TEXTS, task=None, prompt="Query: ")
    assert cosines(mlx_jina.load(dst).encode_query(TEXTS), want).min() >= 0.9999


def test_the_output_records_no_local_path(tiny_qwen_base, tmp_path, monkeypatch):
    """config.json and the model card (which --upload-repo publishes) used to hold the
    source's absolute path, e.g. /home/alice/models/qwen. Now a local source is recorded
    by its folder's name only, however it was spelled, and a copied `_name_or_path` goes
    too; a Hub cache snapshot is recorded as its repo id and commit."""
    home = tmp_path / "home" / "alice"
    src = home / "models" / "qwen"
    shutil.copytree(tiny_qwen_base, src)
    config = json.loads((src / "config.json").read_text())
    config["_name_or_path"] = str(src)  # as transformers writes it after a local load
    (src / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "models")
    api = FakeHubApi()
    for i, spelling in enumerate([str(src), "qwen", "./qwen/", "~/models/qwen"]):
        dst = tmp_path / f"out{i}"
        mlx_jina.convert(spelling, str(dst), task="retrieval", upload_repo="me/x", api=api)
        for path in dst.iterdir():
            if path.suffix in (".json", ".md"):
                text = path.read_text()
                assert str(home) not in text and "alice" not in text, (spelling, path.name)
        info = json.loads((dst / "config.json").read_text())["mlx_jina"]
        assert info["source"] == "qwen", spelling
        assert "`qwen` for the `retrieval` task" in (dst / "README.md").read_text()
        assert mlx_jina.load(dst).task == "retrieval"
    # a snapshot in the Hub cache: its repo id, and the commit as the revision
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = home / ".cache" / "models--me--base" / "snapshots" / sha
    shutil.copytree(src, snapshot)
    dst = mlx_jina.convert(str(snapshot), str(tmp_path / "snap"), task="retrieval")
    info = json.loads((dst / "config.json").read_text())["mlx_jina"]
    assert (info["source"], info["revision"]) == ("me/base", sha)
    card = (dst / "README.md").read_text()
    assert "[me/base](https://huggingface.co/me/base)" in card and "base_model: me/base" in card
    assert str(home) not in card + (dst / "config.json").read_text()


class CardReadingHubApi(FakeHubApi):
    """Also keeps each uploaded model card's text, as the Hub would receive it."""

    def __init__(self):
        super().__init__()
        self.cards = {}

    def upload_folder(self, folder_path, repo_id, **kwargs):
        super().upload_folder(folder_path, repo_id, **kwargs)
        self.cards[repo_id] = (Path(folder_path) / "README.md").read_text()


def file_states(folder: Path) -> dict:
    """Every file under `folder`: size, mtime and content."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_uploaded_card_and_untouched_source(tiny_qwen_base, tmp_path):
    """The published card carries the YAML front matter (library, base model, tags,
    license), the measured fidelity table and the Swift snippet; the ST card names its
    library. No format writes into the source: its files, sizes and mtimes stay."""
    from huggingface_hub import ModelCard

    # A Hub cache snapshot is recorded as that repo at that commit: the base model.
    src = tmp_path / "hub" / "models--jinaai--jina-embeddings-v5-text-small" / "snapshots" / "abc123"
    shutil.copytree(tiny_qwen_base, src)
    before = file_states(tmp_path / "hub")
    api = CardReadingHubApi()
    dst = mlx_jina.convert(
        str(src), str(tmp_path / "q"), task="retrieval", quantize=True,
        upload_repo="me/small-retrieval-4bit", api=api,
    )
    card = ModelCard(api.cards["me/small-retrieval-4bit"])
    assert card.data.library_name == "mlx"
    assert card.data.base_model == "jinaai/jina-embeddings-v5-text-small"
    assert card.data.license == "cc-by-nc-4.0"
    assert {"mlx", "mlx-jina", "jina-embeddings-v5", "qwen3", "mlx-swift"} <= set(card.data.tags)
    report = json.loads((dst / QUALITY_FILE).read_text())
    assert quality.markdown_table([report]) in card.text
    assert "revision abc123" in card.text
    swift = card.text.split("```swift\n", 1)[1].split("```", 1)[0]
    assert "import MLXEmbedders" in swift and "loadContainer(" in swift
    assert '"Query: Which planet' in swift and '"Document: Mars' in swift

    api = CardReadingHubApi()
    mlx_jina.convert(
        str(src), str(tmp_path / "st"), task="text-matching", format="sentence-transformers",
        upload_repo="me/small-tm-st", api=api,
    )
    card = ModelCard(api.cards["me/small-tm-st"])
    assert card.data.library_name == "sentence-transformers"
    assert card.data.base_model == "jinaai/jina-embeddings-v5-text-small"
    assert "sentence-transformers" in card.data.tags and "```swift" not in card.text
    mlx_jina.convert(str(src), str(tmp_path / "sw"), task="clustering", format="swift")
    assert file_states(tmp_path / "hub") == before
