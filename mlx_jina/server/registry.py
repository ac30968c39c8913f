"""The models a server offers: loaded on first use, unloaded when idle, at most N at once.

Each model has a slot: unloaded, loading, loaded or unloading. A request `use`s a model:
it is loaded if need be (one load at a time, so a storm of requests for cold models can't
load several at once), pinned while the request runs, then kept for its keep-alive (the
request's, else the model's, else the server's default) and unloaded when that runs out.
When `max_loaded` slots are taken, the least recently used idle model is unloaded to make
room; with none idle, the request waits for one (until its deadline). Unloading stops the
model's worker and gives its memory back to the system.

All state changes run on the event loop's thread; loads and unloads run in worker
threads, and the loop only awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from ..encoding.embedder import Embedder
from .durations import FOREVER, shown
from .limits import Limits
from .memory import release_memory
from .metrics import Metrics
from .protocol import ApiError
from .service import EmbeddingService
from .worker import Worker

DEFAULT_MAX_LOADED = 3  # Ollama's default on one GPU


class UnknownModel(ApiError):
    """A request named a model this server does not offer (404)."""

    def __init__(self, name: str, offered: list[str]):
        ids = [f"{n}{suffix}" for n in offered[:10] for suffix in ("", ":query")]
        more = f" and {len(offered) - 10} more" if len(offered) > 10 else ""
        super().__init__(
            404,
            f"model {name!r} not found; this server offers {', '.join(map(repr, ids))}{more} "
            "(see GET /v1/models or /api/tags).",
            param="model",
            code="model_not_found",
        )
        self.name = name


class LoadFailed(ApiError):
    """Loading a model failed; every request that waited for it gets this error."""


@dataclass(eq=False)
class ModelSpec:
    """A model the server offers: its served name and how to load it.

    `keep_alive`: seconds it stays loaded after its last request (None: the server's
    default; FOREVER: until the server stops). `source` is shown in listings.
    """

    name: str
    load: Callable[[], Embedder]
    source: str = ""
    keep_alive: float | None = None
    cached: bool = False  # found in the Hugging Face cache rather than named at start

    @property
    def names(self) -> set[str]:
        # A repo id "org/name" is also asked for by its name alone.
        return {self.name, self.name.rsplit("/", 1)[-1]}


@dataclass(eq=False)
class Slot:
    spec: ModelSpec
    state: str = "unloaded"  # unloaded | loading | loaded | unloading
    service: EmbeddingService | None = None
    loading: asyncio.Future | None = None
    in_use: int = 0  # requests running on it (it is not unloaded under them)
    last_used: float = 0.0  # time.monotonic()
    expires_at: float | None = None  # time.time(); None: kept until the server stops
    keep_alive: float = FOREVER  # of the last request
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    size: int = 0  # bytes of weights, once loaded
    loaded_at: float = 0.0  # time.time()


@dataclass(frozen=True)
class Used:
    """A loaded model, for the length of one request."""

    name: str
    service: EmbeddingService
    load_seconds: float  # 0.0 when it was loaded already


class ModelRegistry:
    """The models one server offers, loaded on demand; see the module docstring."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        keep_alive: float = FOREVER,
        max_loaded: int = DEFAULT_MAX_LOADED,
        split_special_tokens: bool = False,
        accept_token_ids: bool = False,
    ):
        self.slots = [Slot(spec) for spec in specs]
        if not self.slots:
            raise ValueError("A server needs at least one model (-m).")
        seen: dict[str, str] = {}
        for slot in self.slots:
            if slot.spec.name in seen:
                raise ValueError(
                    f"Two models are served as {slot.spec.name!r} ({seen[slot.spec.name]} and "
                    f"{slot.spec.source}); name them apart with -m NAME=PATH."
                )
            seen[slot.spec.name] = slot.spec.source
        if max_loaded < 1:
            raise ValueError(f"max_loaded={max_loaded}; at least 1 model must fit.")
        self.limits, self.metrics = limits or Limits(), metrics or Metrics()
        self.keep_alive, self.max_loaded = keep_alive, max_loaded
        self.service_options = (split_special_tokens, accept_token_ids)
        self._changed: asyncio.Condition | None = None  # made on the loop that uses it
        self._load_lock: asyncio.Lock | None = None

    # -- names ----------------------------------------------------------------

    @property
    def default(self) -> Slot:
        """The model a request without a model name gets: the first one given."""
        return self.slots[0]

    def find(self, name: str | None) -> Slot:
        """The slot serving `name` (its name, or a repo id's name alone); None: the default."""
        if name is None:
            return self.default
        for slot in self.slots:
            if slot.spec.name == name:
                return slot
        matches = [s for s in self.slots if name in s.spec.names]
        if len(matches) == 1:
            return matches[0]
        raise UnknownModel(name, [s.spec.name for s in self.slots])

    def loaded(self) -> list[Slot]:
        return [s for s in self.slots if s.state == "loaded"]

    # -- preloading (before the event loop runs) --------------------------------

    def preload(self, slot: Slot | None = None) -> None:
        """Load `slot` (the default) now, on this thread; a load error is raised here."""
        slot = slot or self.default
        self._install(slot, self._start_worker(slot))

    def adopt(self, worker: Worker, slot: Slot | None = None) -> None:
        """Serve an already started worker's model in `slot` (the default)."""
        if worker.model is None:
            raise ValueError("Start the worker (Worker.start()) before serving it.")
        self._install(slot or self.default, worker)

    # -- use ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self, name: str | None, keep_alive: float | None = None, deadline: float | None = None
    ) -> AsyncIterator[Used]:
        """The model `name`, loaded, for one request; `keep_alive` (seconds, FOREVER, 0)
        then sets how long it stays loaded. `deadline` (time.monotonic()) bounds the wait."""
        slot = self.find(name)
        slot.in_use += 1  # pinned: not evicted while this request waits or runs
        try:
            started = time.monotonic()
            loaded_now = await self._ensure_loaded(slot, deadline)
            waited = time.monotonic() - started if loaded_now else 0.0
            yield Used(slot.spec.name, slot.service, waited)
        finally:
            slot.in_use -= 1
            slot.last_used = time.monotonic()
            self._settle(slot, keep_alive)
            self._notify()

    async def unload(self, name: str | None) -> bool:
        """Unload `name` now, unless requests run on it (then once they end); False when
        it was not loaded."""
        slot = self.find(name)
        if slot.state != "loaded":
            return False
        if slot.in_use:
            slot.keep_alive = 0.0
            return True
        await self._unload(slot)
        return True

    def start(self) -> None:
        """Start the keep-alive clocks of the models loaded before the server ran."""
        for slot in self.loaded():
            self._settle(slot, None)

    async def close(self) -> None:
        """Stop every worker (the server is stopping)."""
        for slot in self.slots:
            if slot.timer is not None:
                slot.timer.cancel()
            if slot.service is not None:
                await run_in_threadpool(slot.service.worker.stop)

    def stop_all(self) -> None:
        """close() for callers without an event loop."""
        for slot in self.slots:
            if slot.service is not None:
                slot.service.worker.stop()

    # -- internals ------------------------------------------------------------

    def _conditions(self) -> tuple[asyncio.Condition, asyncio.Lock]:
        if self._changed is None:
            self._changed, self._load_lock = asyncio.Condition(), asyncio.Lock()
        return self._changed, self._load_lock

    def _notify(self) -> None:
        changed, _ = self._conditions()

        async def wake() -> None:
            async with changed:
                changed.notify_all()

        asyncio.ensure_future(wake())

    async def _ensure_loaded(self, slot: Slot, deadline: float | None) -> bool:
        """Wait until `slot` is loaded (loading it if nobody is); True if this call waited."""
        waited = False
        while slot.state != "loaded":
            waited = True
            if slot.state == "unloaded":
                await self._make_room(slot, deadline)
                if slot.state != "unloaded":  # another request started it meanwhile
                    continue
                slot.state = "loading"
                slot.loading = asyncio.ensure_future(self._load(slot))
            if slot.state == "loading":
                await asyncio.shield(slot.loading)  # a failure reaches every waiter
            elif slot.state == "unloading":
                await self._wait_for_change(slot.spec.name, deadline)
        if slot.timer is not None:  # in use again: its expiry starts over afterwards
            slot.timer.cancel()
            slot.timer, slot.expires_at = None, None
        return waited

    async def _load(self, slot: Slot) -> None:
        _, lock = self._conditions()
        try:
            async with lock:  # one load at a time: loads don't stack up in memory
                worker = await run_in_threadpool(self._start_worker, slot)
        except Exception as e:
            slot.state, slot.loading = "unloaded", None
            self._notify()
            raise LoadFailed(
                500,
                f"Loading model {slot.spec.name!r} ({slot.spec.source}) failed: "
                f"{type(e).__name__}: {e}",
                code="model_load_failed",
            ) from e
        self._install(slot, worker)
        self._notify()

    def _start_worker(self, slot: Slot) -> Worker:
        return Worker(slot.spec.load, limits=self.limits, metrics=self.metrics).start()

    def _install(self, slot: Slot, worker: Worker) -> None:
        slot.service = EmbeddingService(worker, slot.spec.name, *self.service_options)
        slot.state, slot.loading = "loaded", None
        slot.size, slot.loaded_at = weight_bytes(worker.model), time.time()
        slot.last_used = time.monotonic()

    async def _make_room(self, slot: Slot, deadline: float | None) -> None:
        """Return once `slot` may load: under max_loaded, after unloading the least
        recently used idle model if need be, or after waiting for one to go idle."""
        while True:
            taken = [s for s in self.slots if s.state != "unloaded"]
            if slot.state != "unloaded" or len(taken) < self.max_loaded:
                return
            idle = [s for s in taken if s.state == "loaded" and not s.in_use]
            if idle:
                await self._unload(min(idle, key=lambda s: s.last_used))
                continue
            await self._wait_for_change(slot.spec.name, deadline)

    async def _wait_for_change(self, name: str, deadline: float | None) -> None:
        """Return after a slot changes state, or a second (a wake-up can be missed
        between a check and this wait); past `deadline`, answer 503."""
        if deadline is not None and time.monotonic() >= deadline:
            raise ApiError(
                503,
                f"Model {name!r} is not loaded and all {self.max_loaded} loaded models are "
                "busy (--max-loaded-models); retry, or raise --max-loaded-models.",
                code="models_busy",
                headers={"Retry-After": "1"},
            )
        changed, _ = self._conditions()
        timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(asyncio.TimeoutError):
            async with changed:
                await asyncio.wait_for(changed.wait(), timeout)

    async def _unload(self, slot: Slot) -> None:
        service = slot.service
        slot.state, slot.service, slot.expires_at = "unloading", None, None
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        try:
            await run_in_threadpool(free, service)
        finally:
            slot.state, slot.size = "unloaded", 0
            self._notify()

    def _settle(self, slot: Slot, keep_alive: float | None) -> None:
        """After a request: keep the model for `keep_alive` (or its own or the server's)."""
        if keep_alive is None:
            keep_alive = slot.spec.keep_alive if slot.spec.keep_alive is not None else (
                self.keep_alive
            )
        slot.keep_alive = keep_alive
        if slot.in_use or slot.state != "loaded":
            return
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if keep_alive == FOREVER:
            slot.expires_at = None
            return
        slot.expires_at = time.time() + keep_alive
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # preloading, before the server runs: expiry starts at first use
            slot.expires_at = None
            return
        slot.timer = loop.call_later(keep_alive, self._expire, slot)

    def _expire(self, slot: Slot) -> None:
        slot.timer = None
        if slot.state == "loaded" and not slot.in_use:
            asyncio.ensure_future(self._unload(slot))

    def describe_keep_alive(self) -> str:
        return shown(self.keep_alive)


def free(service: EmbeddingService) -> None:
    """Stop the model's worker and give its memory back to the system."""
    worker = service.worker
    worker.stop()
    worker.model = service.model = None
    gc.collect()  # the model's arrays may sit in reference cycles
    release_memory()


def weight_bytes(model: Embedder | None) -> int:
    """Bytes of the model's weights (quantized ones as stored)."""
    if model is None:
        return 0
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in tree_flatten(model.model.parameters()))
