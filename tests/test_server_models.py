"""Several models in one server: each answers with its own vectors, loads on demand,
unloads when its keep-alive runs out (giving its memory back), and at most
--max-loaded-models are loaded or loading at once.

Run: python -m pytest tests/test_server_models.py -q

Vectors are compared with encode_document / encode_query of the same checkpoint loaded
in the test. Slow loads and long requests are threading.Event gates in the loader and in
the model's forward pass, so the tests order events without sleeping; the keep-alive
expiry waits on the registry's change event with a timeout.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import httpx
import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from live_server import live_server
from mlx_jina.server import Limits, create_app
from mlx_jina.server.durations import FOREVER
from mlx_jina.server.protocol import ApiError
from mlx_jina.server.registry import ModelRegistry, ModelSpec

DOCS = ["Mars is often called the Red Planet.", "Paris is the capital of France."]
QWEN, NANO, ODD = "qwen-tiny", "org/nano-tiny", "qwen-odd"


def cosines(a, b) -> np.ndarray:
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same(got, want) -> None:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert got.shape == want.shape
    assert cosines(got, want).min() >= 0.99999


def vectors(r: httpx.Response | dict) -> np.ndarray:
    body = r if isinstance(r, dict) else r.json()
    assert isinstance(r, dict) or r.status_code == 200, r.text
    return np.array([d["embedding"] for d in body["data"]])


def post(url: str, model: str | None = None, **body) -> httpx.Response:
    body = {"input": DOCS, **({"model": model} if model else {}), **body}
    return httpx.post(url + "/v1/embeddings", json=body, timeout=60)


class Census:
    """Models alive across loaders (loading, or loaded and not yet freed), and the most
    alive and the most loading at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.alive = self.loading = self.max_alive = self.max_loading = 0

    def add(self, loading: int, alive: int) -> None:
        with self.lock:
            self.loading, self.alive = self.loading + loading, self.alive + alive
            self.max_loading = max(self.max_loading, self.loading)
            self.max_alive = max(self.max_alive, self.alive)


class Loader:
    """`mlx_jina.load(path, task="retrieval")`, counted; `gate` holds each load until set,
    the first `fail` loads raise, and `embed_gate` holds each forward pass until set."""

    def __init__(self, path, census: Census | None = None, gate=None, fail=0, embed_gate=None):
        self.path, self.census, self.gate, self.fail = path, census or Census(), gate, fail
        self.embed_gate, self.calls = embed_gate, 0
        self.started, self.embedding = threading.Event(), threading.Event()

    def __call__(self):
        self.calls += 1
        self.census.add(1, 1)
        self.started.set()
        try:
            assert self.gate is None or self.gate.wait(30)
            if self.calls <= self.fail:
                raise RuntimeError("broken weights")
            model = mlx_jina.load(self.path, task="retrieval")
        except BaseException:
            self.census.add(-1, -1)
            raise
        finally:
            self.census.add(-1, 0)
        weakref.finalize(model, self.census.add, 0, -1)  # freed: no longer alive
        if self.embed_gate is not None:
            model.embed_batch = self.gated(model.embed_batch)
        return model

    def gated(self, embed_batch):
        def run(*args, **kwargs):
            self.embedding.set()
            assert self.embed_gate.wait(30)
            return embed_batch(*args, **kwargs)

        return run


def registry_of(loaders: dict[str, Loader], **kwargs) -> ModelRegistry:
    specs = [ModelSpec(name, load, source=str(load.path)) for name, load in loaders.items()]
    return ModelRegistry(specs, **kwargs)


def until(predicate, timeout: float = 30) -> None:
    """Wait for a condition another thread makes true (the server's), with a timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


async def changed_until(registry: ModelRegistry, predicate, timeout: float = 10) -> None:
    """Wait, on the loop, until a registry change makes `predicate` true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        event = registry._change()  # taken before the check: no change slips by
        if predicate():
            return
        await asyncio.wait_for(event.wait(), deadline - time.monotonic())


async def embed(registry: ModelRegistry, name: str | None, **use) -> np.ndarray:
    async with registry.use(name, **use) as used:
        return vectors(await used.service.embed({"input": DOCS}))


@pytest.fixture(scope="module")
def direct(tiny_qwen_base, tiny_eurobert_base, qwen_base_odd):
    """Served name -> the same checkpoint loaded here: the independent reference."""
    paths = {QWEN: tiny_qwen_base, NANO: tiny_eurobert_base, ODD: qwen_base_odd}
    return {name: mlx_jina.load(path, task="retrieval") for name, path in paths.items()}


@pytest.fixture
def paths(tiny_qwen_base, tiny_eurobert_base, qwen_base_odd):
    return {QWEN: tiny_qwen_base, NANO: tiny_eurobert_base, ODD: qwen_base_odd}


# ---------------------------------------------------------------------------
# names and vectors


def listed(url: str) -> dict[str, bool]:
    return {m["id"]: m["loaded"] for m in httpx.get(url + "/v1/models").json()["data"]}


def test_two_models_answer_with_their_own_vectors_and_load_on_demand(paths, direct):
    loaders = {QWEN: Loader(paths[QWEN]), NANO: Loader(paths[NANO])}
    registry = registry_of(loaders)
    registry.preload()  # as serve() does: the first model at start
    with live_server(create_app(registry)) as url:
        assert listed(url) == {QWEN: True, QWEN + ":query": True, NANO: False, NANO + ":query": False}
        assert httpx.get(url + "/health").json()["loaded"] == [QWEN]
        assert loaders[NANO].calls == 0  # not loaded until asked for
        qwen, nano = direct[QWEN], direct[NANO]
        r = post(url)  # no model: the first one
        assert_same(vectors(r), qwen.encode_document(DOCS))
        assert r.json()["model"] == QWEN
        assert_same(vectors(post(url, QWEN + ":query")), qwen.encode_query(DOCS))
        for name in (NANO, "nano-tiny"):  # a repo-style name, and its last part
            r = post(url, name)
            assert_same(vectors(r), nano.encode_document(DOCS))
            assert r.json()["model"] == NANO
        assert_same(vectors(post(url, "nano-tiny:query")), nano.encode_query(DOCS))
        assert cosines(vectors(post(url, NANO)), vectors(post(url, QWEN))).max() < 0.999
        assert loaders[NANO].calls == 1
        assert all(listed(url).values())
        assert httpx.get(url + "/health").json()["loaded"] == [QWEN, NANO]
        r = post(url, "nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert "'nope'" in r.json()["error"]["message"] and NANO in r.json()["error"]["message"]


# ---------------------------------------------------------------------------
# keep-alive


def test_keep_alive_zero_unloads_after_the_request_and_the_next_reloads(paths, direct):
    """A request's keep_alive=0 unloads the model as the request ends, before any other
    request can pick it up: the next one waits for the unload, then reloads it."""
    loader = Loader(paths[NANO])
    registry = registry_of({NANO: loader}, keep_alive=FOREVER)
    slot = registry.default

    async def scenario():
        first = await embed(registry, NANO, keep_alive=0)
        assert slot.state == "unloading"  # at once: no await between the end and this
        second = await embed(registry, NANO)  # waits for the unload, then reloads
        return first, second

    first, second = asyncio.run(scenario())
    assert loader.calls == 2 and slot.state == "loaded" and slot.expires_at is None
    assert loader.census.alive == 1  # the first load was freed
    assert_same(first, direct[NANO].encode_document(DOCS))
    assert_same(second, first)
    registry.stop_all()


def test_keep_alive_default_per_model_and_forever(paths):
    """The server's default (0.2 s here) runs out; a model's own keep_alive wins over it,
    and a request's over both; FOREVER leaves no timer."""
    loaders = {QWEN: Loader(paths[QWEN]), NANO: Loader(paths[NANO])}
    specs = [ModelSpec(QWEN, loaders[QWEN]), ModelSpec(NANO, loaders[NANO], keep_alive=FOREVER)]
    registry = ModelRegistry(specs, keep_alive=0.2)
    qwen, nano = registry.slots

    async def scenario():
        registry.start()
        await embed(registry, QWEN)
        assert qwen.state == "loaded" and qwen.timer is not None
        assert 0 < qwen.expires_at - time.time() <= 0.2
        await changed_until(registry, lambda: qwen.state == "unloaded")
        await embed(registry, NANO)
        assert nano.state == "loaded" and nano.timer is None and nano.expires_at is None
        await embed(registry, NANO, keep_alive=0.2)  # the request's wins
        assert nano.timer is not None
        await changed_until(registry, lambda: nano.state == "unloaded")
        await embed(registry, QWEN, keep_alive=FOREVER)
        assert qwen.timer is None and qwen.state == "loaded"
        await registry.close()

    asyncio.run(scenario())
    assert (loaders[QWEN].calls, loaders[NANO].calls) == (2, 1)


def test_unload_waits_for_the_requests_running(paths):
    """unload() during a request unloads once it ends; its own keep_alive can't undo that."""
    registry = registry_of({NANO: Loader(paths[NANO])}, keep_alive=FOREVER)
    slot = registry.default

    async def scenario():
        async with registry.use(NANO) as used:
            assert await registry.unload(NANO) is True
            assert slot.state == "loaded"  # not under the running request
            await used.service.embed({"input": DOCS})
        await changed_until(registry, lambda: slot.state == "unloaded")
        assert await registry.unload(NANO) is False  # not loaded

    asyncio.run(scenario())


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_unloading_gives_the_memory_back(qwen_base, capsys):
    """qwen_base (the 151,936-token vocabulary): MLX's active memory goes up by the
    weights while it is loaded and back to within 1% of them once it is unloaded."""
    registry = registry_of({"big": Loader(qwen_base)}, keep_alive=FOREVER)
    slot = registry.default

    async def scenario():
        gc.collect()
        mx.clear_cache()
        seen = [(mx.get_active_memory(), rss_bytes())]
        await embed(registry, "big")
        seen.append((mx.get_active_memory(), rss_bytes()))
        size = slot.size  # the weights' bytes, counted at load
        assert await registry.unload("big")
        seen.append((mx.get_active_memory(), rss_bytes()))
        return size, seen

    size, [(before, rss0), (loaded, rss1), (after, rss2)] = asyncio.run(scenario())
    assert size > 18 * 2**20  # the vocabulary's embeddings alone: 151,936 x 32 floats
    with capsys.disabled():
        mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
        print(f"\nweights {mib(size)}; MLX active before {mib(before)}, loaded {mib(loaded)}, "
              f"unloaded {mib(after)}; RSS {mib(rss0)}, {mib(rss1)}, {mib(rss2)}")  # fmt: skip
    assert slot.state == "unloaded" and slot.service is None and slot.size == 0
    assert loaded - before >= 0.9 * size
    assert abs(after - before) <= 0.01 * size


# ---------------------------------------------------------------------------
# at most N loaded


@pytest.mark.parametrize("max_loaded", [1, 2])
def test_the_least_recently_used_idle_model_makes_room(paths, direct, max_loaded):
    census = Census()
    loaders = {name: Loader(path, census) for name, path in paths.items()}
    registry = registry_of(loaders, max_loaded=max_loaded, keep_alive=FOREVER)

    async def scenario():
        await embed(registry, NANO)
        await embed(registry, QWEN)
        if max_loaded == 2:
            await embed(registry, NANO)  # now QWEN is the least recently used
        got = await embed(registry, ODD)
        assert_same(got, direct[ODD].encode_document(DOCS))
        states = {s.spec.name: s.state for s in registry.slots}
        await registry.close()
        return states

    states = asyncio.run(scenario())
    assert states == {QWEN: "unloaded", NANO: "loaded" if max_loaded == 2 else "unloaded",
                      ODD: "loaded"}  # fmt: skip
    assert census.max_alive == max_loaded


def test_a_request_waits_while_the_loaded_model_is_busy_then_503(paths, direct):
    """--max-loaded-models 1: while QWEN has a request running (its forward pass held),
    a request for NANO waits, and gets 503 models_busy at its deadline; once QWEN's
    request ends, NANO's waiting request unloads QWEN and is answered."""
    release = threading.Event()
    loaders = {QWEN: Loader(paths[QWEN], embed_gate=release), NANO: Loader(paths[NANO])}
    registry = registry_of(loaders, max_loaded=1, limits=Limits(request_timeout=3))
    registry.preload()
    qwen, nano = registry.slots
    with live_server(create_app(registry)) as url, ThreadPoolExecutor(2) as pool:
        running = pool.submit(post, url, QWEN)
        assert loaders[QWEN].embedding.wait(30)
        r = post(url, NANO)
        assert r.status_code == 503 and r.json()["error"]["code"] == "models_busy"
        assert r.headers["Retry-After"] == "1" and NANO in r.json()["error"]["message"]
        waiting = pool.submit(post, url, NANO)
        until(lambda: nano.in_use == 1)
        assert nano.state == "unloaded" and loaders[NANO].calls == 0
        release.set()
        assert_same(vectors(running.result()), direct[QWEN].encode_document(DOCS))
        assert_same(vectors(waiting.result()), direct[NANO].encode_document(DOCS))
        assert (qwen.state, nano.state) == ("unloaded", "loaded")


def test_a_storm_of_requests_never_loads_more_than_max(paths, direct):
    """24 concurrent requests for 3 cold models, at most 2 loaded: never more than 2
    models alive (loading or loaded, counted until their arrays are freed), one load at
    a time, and every answer is its model's."""
    census = Census()
    loaders = {name: Loader(path, census) for name, path in paths.items()}
    registry = registry_of(loaders, max_loaded=2, keep_alive=FOREVER)
    names = [QWEN, NANO, ODD, NANO, ODD, QWEN] * 4
    with live_server(create_app(registry)) as url, ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda name: post(url, name), names))
    for name, r in zip(names, answers):
        assert_same(vectors(r), direct[name].encode_document(DOCS))
    assert census.max_alive <= 2 and census.max_loading == 1
    assert sum(load.calls for load in loaders.values()) >= 3


# ---------------------------------------------------------------------------
# a load that fails


def test_a_failed_load_answers_every_waiter_and_the_next_request_retries(paths, direct):
    gate = threading.Event()
    loaders = {QWEN: Loader(paths[QWEN]), NANO: Loader(paths[NANO], gate=gate, fail=1)}
    registry = registry_of(loaders)
    registry.preload()
    nano = registry.slots[1]
    with live_server(create_app(registry)) as url, ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(post, url, NANO) for _ in range(3)]
        until(lambda: nano.in_use == 3 and loaders[NANO].started.is_set())
        # the other model serves while this load hangs
        assert_same(vectors(post(url, QWEN)), direct[QWEN].encode_document(DOCS))
        gate.set()
        errors = [f.result() for f in waiting]
        assert [r.status_code for r in errors] == [500] * 3
        assert len({r.text for r in errors}) == 1  # one error, the same for all
        error = errors[0].json()["error"]
        assert error["code"] == "model_load_failed"
        assert f"{NANO!r}" in error["message"] and "broken weights" in error["message"]
        assert loaders[NANO].calls == 1 and nano.state == "unloaded"
        assert_same(vectors(post(url, NANO)), direct[NANO].encode_document(DOCS))
        assert loaders[NANO].calls == 2


def test_a_slow_load_answers_503_at_the_deadline_and_goes_on(paths, direct):
    """A request whose deadline passes while its model loads gets 503 model_loading; the
    load goes on (shielded), its keep-alive clock starts though nobody waits for it any
    more, and the next request finds the model loaded, loaded once."""
    gate = threading.Event()
    loader = Loader(paths[NANO], gate=gate)
    registry = registry_of({NANO: loader}, keep_alive=60)
    slot = registry.default

    async def scenario():
        with pytest.raises(ApiError) as e:
            await embed(registry, NANO, deadline=time.monotonic() + 0.2)
        assert (e.value.status, e.value.code) == (503, "model_loading")
        assert e.value.headers == {"Retry-After": "1"}
        gate.set()
        await changed_until(registry, lambda: slot.state == "loaded")
        assert slot.timer is not None and 0 < slot.expires_at - time.time() <= 60
        got = await embed(registry, NANO)
        await registry.close()
        return got

    assert_same(asyncio.run(scenario()), direct[NANO].encode_document(DOCS))
    assert loader.calls == 1


# ---------------------------------------------------------------------------
# inputs cut to the context


@pytest.fixture(scope="module")
def short_model(tiny_qwen_base, tmp_path_factory):
    """tiny_qwen_base with a 40-token context, so over-long inputs are cheap."""
    folder = tmp_path_factory.mktemp("short_context") / "model"
    shutil.copytree(tiny_qwen_base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_truncated_inputs_header(short_model):
    long = "Mars is often called the Red Planet. " * 12
    registry = registry_of({"short": Loader(short_model)})
    with live_server(create_app(registry)) as url:
        r = post(url, input=["hi", long, long], truncate=True)
        assert r.status_code == 200 and r.headers["X-Truncated-Inputs"] == "2"
        with pytest.warns(UserWarning, match="truncated"):
            want = mlx_jina.load(short_model, task="retrieval").encode_document(["hi", long, long])
        assert_same(vectors(r), want)
        for body in ({"input": ["hi"], "truncate": True}, {"input": ["hi"]}):
            r = post(url, **body)
            assert r.status_code == 200 and "X-Truncated-Inputs" not in r.headers
        r = post(url, input=["hi", long])
        assert r.status_code == 400 and "X-Truncated-Inputs" not in r.headers

