"""The local index: SQLite store, folder indexing, search, the other adapters, bad input.

Run: python -m pytest tests/test_index.py -q
"""

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mlx_jina
from mlx_jina.cli import main
from mlx_jina.index import Index, IndexBusyError, load_model
from mlx_jina.index.chunks import chunk_text
from mlx_jina.index.folder import walk_folder
from mlx_jina.index.store import SCHEMA_VERSION, Store
from mlx_jina.tasks import TASKS

NOTES = {
    "mars.md": "# Mars\n\nMars is the red planet.\nIt has two small moons.\n\n"
    "Olympus Mons is the tallest volcano.\n",
    "keys.txt": "API keys rotate every ninety days.\nAsk the ops team for a new key.\n",
    "src/app.py": "def main():\n    print('hello')\n\n\ndef rotate():\n    return 'keys'\n",
    "deep/notes/recipe.md": "Bake the bread at 220 degrees.\n\nLet it cool on a rack.\n",
}
CHUNKING = ["--chunk-tokens", "48", "--overlap", "8"]


@pytest.fixture(scope="module")
def multi(tiny_qwen_base):
    """The tiny base repo with all four adapters, as the index loads it."""
    return load_model(tiny_qwen_base)


def write_folder(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def run_cli(capsys, *argv) -> str:
    main([str(a) for a in argv])
    return capsys.readouterr().out


def index_json(capsys, model, folder, db) -> dict:
    out = run_cli(capsys, "index", folder, "--db", db, "-m", model, "--json", *CHUNKING)
    return json.loads(out)


def search_ids(db: Path, query: str, k: int = 50) -> list[tuple[str, float]]:
    with Index(db) as index:
        return [(h["id"], h["score"]) for h in index.search(query, k)]


def test_reindex_embeds_only_the_edited_file_and_drops_deleted_ones(
    capsys, tmp_path, tiny_qwen_base
):
    """A second run embeds just the changed file; a deleted file's chunks are gone."""
    docs = write_folder(tmp_path / "docs", NOTES)
    db = tmp_path / "index.db"
    first = index_json(capsys, tiny_qwen_base, docs, db)
    assert (first["embedded"], first["unchanged"], first["removed"]) == (4, 0, 0)
    assert first["items"] == first["chunks"] == first["embedded_chunks"] > 4

    (docs / "keys.txt").write_text("API keys now rotate every thirty days.\n")
    second = index_json(capsys, tiny_qwen_base, docs, db)
    assert (second["embedded"], second["unchanged"], second["removed"]) == (1, 3, 0)
    with Index(db) as index:
        [hit] = [h for h in index.list(1000) if h.source and h.source.endswith("keys.txt")]
        assert "thirty days" in hit.text

    (docs / "mars.md").unlink()
    third = index_json(capsys, tiny_qwen_base, docs, db)
    assert (third["embedded"], third["unchanged"], third["removed"]) == (0, 3, 1)
    assert third["removed_chunks"] > 0
    with Index(db) as index:
        assert not [i for i in index.list(1000) if i.source.endswith("mars.md")]
        assert index.count() == third["items"] == third["chunks"] == second["chunks"] - (
            third["removed_chunks"])


def test_search_prints_path_lines_score_and_passage(capsys, tmp_path, tiny_qwen_base):
    docs = write_folder(tmp_path / "docs", NOTES)
    db = tmp_path / "index.db"
    index_json(capsys, tiny_qwen_base, docs, db)
    out = run_cli(capsys, "search", "--db", db, "tallest volcano", "-k", "2")
    first = out.splitlines()[0]
    path, score = first.split()
    assert path.rsplit(":", 1)[1].count("-") == 1 and float(score) <= 1
    out = run_cli(capsys, "search", "--db", db, "tallest volcano", "-k", "2", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert Path(hits[0]["source"]).is_file() and hits[0]["lines"][0] <= hits[0]["lines"][1]


def test_search_equals_the_direct_ranking(tmp_path, multi):
    """Index.search = semantic_search over quantize_embeddings of encode_document, with the
    query from encode_query (binary + int8 rescoring, int8, float16)."""
    texts = [f"note {i}: " + " ".join(["mars", "keys", "bread", "moons", "ops"][j % 5]
                                      for j in range(i, i + 6)) for i in range(30)]  # fmt: skip
    with Index(tmp_path / "i.db", multi, float16=True) as index:
        ids = index.add(texts)
        docs = multi.encode_document(texts, task="retrieval")
        q = multi.encode_query("bread and moons", task="retrieval")
        want = mlx_jina.semantic_search(
            q, mlx_jina.quantize_embeddings(docs, "ubinary"), 5, corpus_precision="ubinary",
            rescore_embeddings=mlx_jina.quantize_embeddings(docs, "int8"))[0]
        got = index.search("bread and moons", 5)
        assert [h["id"] for h in got] == [ids[w["corpus_id"]] for w in want]
        assert np.allclose([h["score"] for h in got], [w["score"] for w in want], atol=1e-5)
        exact = np.argsort(-(docs @ q), kind="stable")[:5]
        got = index.search("bread and moons", 5, precision="float16")
        assert [h["id"] for h in got] == [ids[i] for i in exact]


def test_filter_upsert_forget_and_a_reopened_index(tmp_path, multi):
    db = tmp_path / "i.db"
    with Index(db, multi) as index:
        a, b = index.add(["red planet facts", "red planet myths"],
                         [{"kind": "fact"}, {"kind": "myth", "n": 2, "tags": ["x", "é"]}])
        assert [h["id"] for h in index.search("red planet", 5, {"kind": "myth"})] == [b]
        assert [h["id"] for h in index.search("red planet", 5, {"n": 2})] == [b]
        assert [h["id"] for h in index.search("red planet", 5, {"tags": ["x", "é"]})] == [b]
        assert index.search("red planet", 5, {"kind": "myth", "n": 3}) == []
        with pytest.raises(ValueError, match="already in the index.*upsert"):
            index.add(["again"], ids=[a])
        index.upsert(["bread recipe"], [{"kind": "fact"}], ids=[a])
        assert index.get([a])[0].text == "bread recipe"
        assert index.delete([b]) == 1 and index.delete([b]) == 0
    with Index(db) as index:  # its own model, from the file
        assert index.model.identity == multi.identity
        assert [h["id"] for h in index.search("bread", 5)] == [a]


def test_cli_errors_are_one_line_and_create_nothing(capsys, tmp_path, tiny_qwen_base,
                                                    tiny_eurobert_base):  # fmt: skip
    docs = write_folder(tmp_path / "docs", NOTES)
    db = tmp_path / "i.db"
    index_json(capsys, tiny_qwen_base, docs, db)
    for argv, message in [
        (["search", "--db", db, ""], "query[0] is empty"),
        (["search", "--db", db, "x", "-k", "0"], "'0' is not a positive integer"),
        (["search", "--db", db, "x", "--filter", '{"nope": 1}'], "filter key 'nope'"),
        (["search", "--db", db, "x", "--filter", "{nope"], "--filter '{nope' is not JSON"),
        (["search", "--db", tmp_path / "typo.db", "x"], "No index at"),
        (["index", docs, "--db", db, "-m", tiny_eurobert_base], "leave -m out"),
        (["index", docs, "--db", tmp_path / "new.db"], "Build one first: mlx-jina index DIR"),
    ]:
        with pytest.raises(SystemExit) as exit:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit):  # a new index with a bad setting: no file left behind
        main(["index", str(docs), "--db", str(tmp_path / "bad.db"), "-m", str(tiny_qwen_base),
              "--dims", "8"])  # fmt: skip
    assert "truncate_dim=8" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists() and not list(tmp_path.glob("bad.db*"))
    with Index(db) as index:
        assert index.count() > 0 and index.store.integrity() == "ok"


def test_an_index_of_a_single_task_model_reopens_with_it(tmp_path, qwen):
    """Built from an Embedder loaded for retrieval only: reopened without a model, it
    loads the same way (same identity), not as a multitask model."""
    with Index(tmp_path / "i.db", qwen) as index:
        [kept] = index.add(["kept"])
    with Index(tmp_path / "i.db") as index:
        assert index.model.identity == qwen.identity and not index.model.multitask
        assert [h["id"] for h in index.search("kept")] == [kept]


def test_bad_input_is_refused_and_nothing_is_lost(tmp_path, multi):
    db = tmp_path / "i.db"
    with Index(db, multi, max_tokens=64) as index:
        [kept] = index.add(["a note to keep"], [{"kind": "note"}])
        for query, k, filter, match in [
            ("", 5, None, "query\\[0\\] is empty"),
            ("   ", 5, None, "only whitespace"),
            ("x", 0, None, "k=0; use a positive integer"),
            ("x", -3, None, "k=-3"),
            ("x", 5, {"colour": "red"},
             "filter key 'colour' is in no item's metadata; the keys stored are kind"),
            ("x", 5, "kind", "pass an object"),
        ]:  # fmt: skip
            with pytest.raises(ValueError, match=match):
                index.search(query, k, filter)
        with pytest.raises(
            ValueError, match=r"texts\[0\] is .* tokens; the index embeds at most 64"
        ):
            index.add(["word " * 500])
        with pytest.raises(ValueError, match="metadata\\[0\\] is not JSON"):
            index.add(["x"], [{"v": float("nan")}])
        assert [i.id for i in index.list()] == [kept]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_another_models_index_is_refused_with_the_fix(tmp_path, multi, tiny_eurobert_base):
    db = tmp_path / "i.db"
    with Index(db, multi) as index:
        index.add(["kept"])
    with pytest.raises(ValueError, match="other settings.*identity.*leave -m out"):
        Index(db, tiny_eurobert_base)
    with pytest.raises(ValueError, match="holds 64-dimensional vectors, not 32"):
        Index(db, multi, dims=32)
    with Index(db) as index:
        assert [i.text for i in index.list()] == ["kept"]


def test_newer_schema_and_foreign_files_are_refused(tmp_path, multi):
    db = tmp_path / "i.db"
    with Index(db, multi) as index:
        index.add(["kept"])
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade mlx-jina"):
        Index(db)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="without an mlx-jina index"):
        Index(other, multi)
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(ValueError, match="not a SQLite database"):
        Index(text, multi)
    assert text.read_text() == "not a database"


def test_a_busy_index_waits_then_fails_clearly(tmp_path, multi):
    """A writer holding the lock makes another's write fail after busy_timeout, with the
    reason; once released, writes go through, and each connection searches the other's."""
    db = tmp_path / "i.db"
    with Index(db, multi) as first, Index(db, busy_timeout=0.05) as second:
        first.store.db.execute("BEGIN IMMEDIATE")
        with pytest.raises(IndexBusyError, match="busy: another process held it"):
            second.add(["waits"])
        first.store.db.execute("COMMIT")
        assert second.search("written") == []  # second now caches the vectors
        [early] = first.add(["written first"])
        # second sees first's writes: cached vectors are dropped when the file changes.
        assert [h["id"] for h in second.search("written")] == [early]
        first.delete([early])
        assert second.search("written") == []
        second.add(["goes through"])
        assert [i.text for i in first.list()] == ["goes through"]


def test_folder_walk_skips_with_counts(tmp_path):
    """.gitignore (with negation and folder rules), excludes, binary, non-UTF-8, oversize."""
    root = write_folder(tmp_path / "d", {
        ".gitignore": "*.log\nbuild/\n!keep.log\n/top.txt\n",
        "a.md": "text", "top.txt": "anchored", "sub/top.txt": "not anchored",
        "x.log": "ignored", "keep.log": "kept", "build/out.txt": "ignored",
        "bin.txt": b"\x00\x01binary", "latin.txt": b"caf\xe9", "big.txt": "x" * 200,
        "photo.png": b"\x89PNG", "vendor/lib.py": "excluded",
    })  # fmt: skip
    (root / "link.txt").symlink_to(tmp_path / "d" / "a.md")
    walk = walk_folder(root, exclude=("vendor",), max_file_bytes=100)
    assert sorted(walk.files) == ["a.md", "bin.txt", "keep.log", "latin.txt", "sub/top.txt"]
    assert walk.skipped == {"over 100 bytes": ["big.txt"], "symbolic link": ["link.txt"]}


def test_non_utf8_and_binary_files_are_skipped_and_named(capsys, tmp_path, tiny_qwen_base):
    docs = write_folder(tmp_path / "docs", {"ok.txt": "fine text\n", "latin.txt": b"caf\xe9\n",
                                            "bin.txt": b"ab\x00cd"})  # fmt: skip
    main(["index", str(docs), "--db", str(tmp_path / "i.db"), "-m", str(tiny_qwen_base)])
    out, err = capsys.readouterr()
    assert "1 files embedded" in out and "2 skipped" in out
    assert "not UTF-8 (byte 0xe9 at offset 3): " in err and "latin.txt" in err
    assert "binary" in err and "bin.txt" in err


def test_chunks_cover_the_text_within_budget():
    """Whitespace tokens: every non-blank character in some chunk; chunks within budget;
    neighbours overlap; cuts prefer paragraph ends; a giant line is windowed."""
    text = "\n".join(
        [" ".join(f"w{i}_{j}" for j in range(7)) if i % 4 else "" for i in range(60)]
        + ["x" * 10 + " y" * 100])  # fmt: skip

    def spans(lines):
        out = []
        for line in lines:
            pos, row = 0, []
            for word in line.split():
                start = line.index(word, pos)
                row.append((start, start + len(word)))
                pos = start + len(word)
            out.append(row)
        return out

    long_lines = []

    def line_spans(line):
        long_lines.append(line)
        return spans([line])[0]

    chunks = chunk_text(text, lambda lines: [len(s) for s in spans(lines)], line_spans,
                        budget=30, overlap=8)  # fmt: skip
    assert long_lines == [text.splitlines()[-1]]  # offsets only where a line is cut
    covered = np.zeros(len(text), bool)
    for c in chunks:
        covered[c.start : c.end] = True
        assert len(text[c.start : c.end].split()) <= 30
        assert text[c.start : c.end].strip() == text[c.start : c.end]
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]) if b.last_line < 61)
    lines = text.splitlines()
    assert all(lines[c.last_line] == "" for c in chunks if c.last_line < 60)  # paragraph ends
    assert len([c for c in chunks if c.first_line == c.last_line == 61]) >= 4


def test_no_chunk_is_empty_or_blank():
    """A line exactly `budget` characters long (a byte-level tokenizer: one token per
    character) or ending in spaces gives no chunk of only its line end or its spaces."""

    def chars(lines):
        return [[(i, i + 1) for i in range(len(line))] for line in lines]

    text = "a" * 32 + "\n" + "b" * 5 + "\r\n\n" + "c" * 32 + " " * 32 + "\n"
    chunks = chunk_text(text, lambda lines: [len(s) for s in chars(lines)],
                        lambda line: chars([line])[0], budget=32, overlap=0)  # fmt: skip
    assert [text[c.start : c.end] for c in chunks] == ["a" * 32, "b" * 5, "c" * 32]


def test_folder_chunking_counts_tokens_as_the_offsets_do(tmp_path, multi):
    """The index counts line tokens without offsets (encode_batch_fast), asking offsets only
    of lines it cuts: the same chunks as offsets everywhere."""
    text = "\n".join([" ".join(["bread", "volcano", "keys"][: i % 3 + 1]) * (i % 5 + 1)
                      for i in range(40)] + ["moons and keys " * 60, "", "the end"])  # fmt: skip
    with Index(tmp_path / "i.db", multi) as index:
        fast = chunk_text(text, index._token_counts, index._spans, 40, 8)
        offsets = chunk_text(text, lambda lines: [len(index._spans(x)) for x in lines],
                             index._spans, 40, 8)  # fmt: skip
    assert fast == offsets and len(fast) > 5


def test_the_other_three_adapters(tmp_path, multi, qwen_for):
    """classify / near-duplicates / clusters use their own adapters: equal to the same
    math over vectors of a model loaded for that one task."""
    from mlx_jina.index import tasks

    texts = ["the cat sat on the mat", "the cat sat on the mat!", "stock prices fell",
             "markets dropped sharply", "a kitten on a rug"]  # fmt: skip
    labels = ["animals", "finance"]
    single = qwen_for("classification")
    v = single.encode([*texts, *labels])
    want = v[:5] @ v[5:].T
    with Index(tmp_path / "i.db", multi) as index:
        got = index.classify(texts, labels)
        assert [g["label"] for g in got] == [labels[i] for i in want.argmax(1)]
        assert np.allclose([list(g["scores"].values()) for g in got], want, atol=1e-4)
        index.add(texts, ids=[f"t{i}" for i in range(5)])
        m = qwen_for("text-matching").encode(texts)
        sims = m @ m.T
        threshold = float(np.sort(sims[np.triu_indices(5, 1)])[-2])  # the two closest pairs
        pairs = index.near_duplicates(threshold - 1e-4)
        assert len(pairs) == 2 and pairs[0]["score"] >= pairs[1]["score"]
        i, j = np.unravel_index(np.argmax(np.triu(sims, 1)), sims.shape)
        assert pairs[0]["ids"] == [f"t{i}", f"t{j}"]
        groups = index.clusters(2)
        assert sorted(len(g) for g in groups.values()) != [] and sum(map(len, groups.values())) == 5
    c = qwen_for("clustering").encode(texts)
    assert tasks.clusters(multi, texts, 2) == tasks.clusters(_Fixed(c), texts, 2)
    with pytest.raises(ValueError, match="at least two candidate labels"):
        tasks.classify(multi, texts, ["one"])
    with pytest.raises(ValueError, match="loaded for 'retrieval' only"):
        tasks.classify(qwen_for("retrieval"), texts, labels)
    assert set(multi.tasks) == set(TASKS)


class _Fixed:
    """A stand-in model that returns given vectors (to run the k-means on them)."""

    multitask = True

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, **kwargs):
        return self.vectors


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from contextlib import contextmanager
    from mlx_jina.index.search import Index
    from mlx_jina.index.store import Store

    plain = Store.transaction
    count = 0

    @contextmanager
    def gated(self):
        global count
        with plain(self) as db:
            yield db
            count += 1
            print(f"writing {count}", flush=True)  # inside the transaction, not yet committed
            if count == int(sys.argv[4]):
                sys.stdin.readline()  # the test kills us here
        print(f"committed {count}", flush=True)

    Store.transaction = gated
    with Index(sys.argv[2], sys.argv[1]) as index:
        index.index_folder(sys.argv[3], chunk_tokens=48, overlap=8, batch_texts=1)
""")


def test_kill_9_mid_write_then_rerun_equals_a_fresh_index(tmp_path, tiny_qwen_base):
    """kill -9 inside a file's transaction: the index opens, passes integrity_check,
    holds every committed file whole and nothing of the killed one; a rerun finishes it
    and searches exactly like a fresh index of the same folder."""
    docs = write_folder(tmp_path / "docs", NOTES)
    db = tmp_path / "killed.db"
    # Transactions: 1 creates the schema, 2 records the fingerprint, then one per file
    # (batch_texts=1: a batch is one file).
    kill_at = 4  # inside the second file's
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tiny_qwen_base), str(db), str(docs),
         str(kill_at)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == f"writing {kill_at}":
            proc.kill()
            break
    proc.wait(timeout=60)
    assert proc.returncode == -9 and f"committed {kill_at - 1}" in lines
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    files = dict(con.execute("SELECT path, chunks FROM files").fetchall())
    done = sorted(NOTES)[:1]
    assert list(files) == done
    per_file = dict(con.execute("SELECT source, count(*) FROM items GROUP BY source").fetchall())
    assert {Path(s).relative_to(docs.resolve()).as_posix(): n for s, n in per_file.items()} == files
    con.close()

    with Index(db) as index:
        summary = index.index_folder(docs, chunk_tokens=48, overlap=8)
        assert (summary["embedded"], summary["unchanged"]) == (3, 1)
        assert index.store.integrity() == "ok"
    fresh = tmp_path / "fresh.db"
    with Index(fresh, tiny_qwen_base) as index:
        index.index_folder(docs, chunk_tokens=48, overlap=8)
    for query in ("tallest volcano", "rotate keys", "bread"):
        got, want = search_ids(db, query), search_ids(fresh, query)
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-6)
