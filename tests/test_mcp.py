"""`mlx-jina mcp`, driven by the official MCP client SDK over stdio, as an agent would.

Run: python -m pytest tests/test_mcp.py -q
"""

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from mlx_jina.index import load_model  # noqa: E402

TOOLS = {"search", "remember", "forget", "index_folder", "classify"}
MEMORIES = [
    ("The user prefers dark roast coffee, no sugar.", {"kind": "preference"}),
    ("Project Falcon ships on the first of March.", {"kind": "deadline"}),
    ("The office wifi password is on the fridge.", {"kind": "fact"}),
]


def server(db: Path, *args) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "mlx_jina", "mcp", "--db", str(db), *map(str, args)],
        env=dict(os.environ),  # PYTHONPATH: this checkout's mlx_jina
    )  # fmt: skip


async def session_run(params: StdioServerParameters, work):
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


async def call(session: ClientSession, tool: str, **arguments):
    """The tool's structured result, or the error text of a refused call."""
    result = await session.call_tool(tool, arguments)
    if result.isError:
        return {"error": " ".join(c.text for c in result.content)}
    data = result.structuredContent
    return data["result"] if set(data) == {"result"} else data


def run(params, work):
    return asyncio.run(session_run(params, work))


@pytest.fixture(scope="module")
def multi(tiny_qwen_base):
    return load_model(tiny_qwen_base)


def test_tools_remember_search_forget_and_a_restart(tmp_path, tiny_qwen_base, multi):
    """Tools listed by name; `remember` then `search` ranks as encode_query . encode_document
    computed directly; `forget` removes the item; a restarted server keeps the rest."""
    db, root = tmp_path / "memory.db", tmp_path / "root"
    root.mkdir()
    query = "How does the user take their coffee?"
    docs = multi.encode_document([t for t, _ in MEMORIES], task="retrieval")
    direct = docs @ multi.encode_query(query, task="retrieval")

    async def first(session):
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        assert all(len(t.description) > 80 for t in listed.tools)
        ids = [(await call(session, "remember", text=t, metadata=m))["id"] for t, m in MEMORIES]
        hits = await call(session, "search", query=query, k=3)
        assert [h["id"] for h in hits] == [ids[i] for i in np.argsort(-direct, kind="stable")]
        assert np.allclose([h["score"] for h in hits], np.sort(direct)[::-1], atol=0.02)
        only = await call(session, "search", query=query, k=3, filter={"kind": "deadline"})
        assert [h["id"] for h in only] == [ids[1]]
        assert await call(session, "forget", id=ids[0]) == {"forgotten": True}
        assert await call(session, "forget", id=ids[0]) == {"forgotten": False}
        hits = await call(session, "search", query=query, k=3)
        assert ids[0] not in [h["id"] for h in hits] and len(hits) == 2
        return ids

    ids = run(server(db, "-m", tiny_qwen_base, "--root", root), first)

    async def again(session):
        hits = await call(session, "search", query=query, k=5)
        assert sorted(h["id"] for h in hits) == sorted(ids[1:])
        assert (await call(session, "search", query="", k=5))["error"].endswith(
            "every text needs some content.")
        assert "k=0" in (await call(session, "search", query=query, k=0))["error"]

    run(server(db), again)  # the index's own model, no -m


def test_index_folder_only_inside_the_root_and_classify(tmp_path, tiny_qwen_base, multi):
    db, root, outside = tmp_path / "i.db", tmp_path / "root", tmp_path / "outside"
    (root / "notes").mkdir(parents=True)
    outside.mkdir()
    (root / "notes" / "a.md").write_text("Falcon launch checklist.\n\nFuel, then count down.\n")
    (outside / "secret.txt").write_text("do not read")
    (root / "escape").symlink_to(outside)
    labels = ["bug report", "feature request"]
    text = "The app crashes when I click save."

    async def work(session):
        for path in (str(outside), "../outside", str(root / "notes" / ".." / ".." / "outside"),
                     str(root / "escape"), "escape"):  # fmt: skip
            refused = await call(session, "index_folder", path=path)
            assert "error" in refused and ("outside the allowed roots" in refused["error"]
                                           or "contains '..'" in refused["error"]), path
        done = await call(session, "index_folder", path=str(root / "notes"))
        assert (done["embedded"], done["skipped"]) == (1, 0)
        done = await call(session, "index_folder", path="notes")  # relative to the root
        assert (done["embedded"], done["unchanged"]) == (0, 1)
        hits = await call(session, "search", query="launch fuel", k=5)
        assert [Path(h["source"]).name for h in hits] == ["a.md"]
        assert not any("secret" in h["text"] for h in hits)
        return await call(session, "classify", text=text, labels=labels)

    got = run(server(db, "-m", tiny_qwen_base, "--root", root), work)
    v = multi.encode([text, *labels], task="classification")
    want = v[1:] @ v[0]
    assert got["label"] == labels[int(np.argmax(want))]
    assert np.allclose([got["scores"][label] for label in labels], want, atol=1e-5)


def test_without_a_root_index_folder_is_off(tmp_path, tiny_qwen_base):
    async def work(session):
        return await call(session, "index_folder", path=str(tmp_path))

    refused = run(server(tmp_path / "i.db", "-m", tiny_qwen_base), work)
    assert "started without --root" in refused["error"]
