"""The models a server offers: loaded on first use, unloaded when idle, at most N at once.

Each model has a slot: unloaded, loading, loaded or unloading. A request `use`s a model:
it is loaded if need be (one load at a time), pinned while the request runs, then kept
for its keep-alive (the request's, else the model's, else the server's) and unloaded when
that runs out. Loaded and loading slots are at most `max_loaded`: to make room the least
recently used idle model is unloaded; with none idle, the request waits for one (until
its deadline, then 503). Unloading stops the model's worker and gives its memory back.

State changes run on the event loop's thread, with no `await` between a check and the
change it decides; loads and unloads run in threads that the loop awaits. A waiter takes
the change event before it checks, and every change sets it: no wake-up is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from ..encoding.embedder import Embedder
from .durations import FOREVER, keep_alive_seconds
from .limits import DEFAULT_MAX_LOADED, Limits
from .memory import free, weight_bytes
from .metrics import Metrics
from .protocol import ApiError
from .service import EmbeddingService
from .worker import Worker

log = logging.getLogger("mlx_jina.server")


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
    loading: asyncio.Task | None = None
    in_use: int = 0  # requests waiting for it or running on it (it is not unloaded under them)
    last_used: float = 0.0  # time.monotonic()
    expires_at: float | None = None  # time.time(); None: kept until the server stops
    keep_alive: float = FOREVER  # of the last request
    unload_asked: bool = False  # unload() while requests ran: unload once they end
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
        names = [s.spec.name for s in self.slots]
        if twice := next((n for n in names if names.count(n) > 1), None):
            sources = " and ".join(s.spec.source for s in self.slots if s.spec.name == twice)
            raise ValueError(
                f"Two models are served as {twice!r} ({sources}); name them apart with "
                "-m NAME=PATH (or \"name\" in --models)."
            )
        if isinstance(max_loaded, bool) or not isinstance(max_loaded, int) or max_loaded < 1:
            raise ValueError(f"max_loaded_models={max_loaded!r}; give a whole number, at least 1.")
        self.limits, self.metrics = limits or Limits(), metrics or Metrics()
        if keep_alive != FOREVER:  # a negative number is FOREVER too
            keep_alive = keep_alive_seconds(keep_alive, "keep_alive")
        self.keep_alive, self.max_loaded = keep_alive, max_loaded
        self.service_options = (split_special_tokens, accept_token_ids)
        self.closing = False
        # Made on the loop that uses them (asyncio objects belong to one loop).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._load_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task] = set()  # unloads started by a timer

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

    # -- before the event loop runs --------------------------------------------

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
        """The model `name`, loaded, for one request; `keep_alive` (seconds; FOREVER or
        negative: keep; 0: unload after it) then sets how long it stays loaded.
        `deadline` (time.monotonic()) bounds the wait."""
        slot = self.find(name)
        check_open(self)
        slot.in_use += 1  # pinned: not unloaded while this request waits or runs
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
        """Unload `name` now, or once the requests running on it end; False when it was
        not loaded (or still loading)."""
        slot = self.find(name)
        if slot.state != "loaded":
            return False
        if slot.in_use:
            slot.unload_asked = True
            return True
        await self._unload(slot)
        return True

    def start(self) -> None:
        """The server starts: bind to its loop, start the keep-alive clocks of the models
        loaded before it ran."""
        self._bind()
        self.closing = False
        for slot in self.loaded():
            self._settle(slot, None)

    async def close(self) -> None:
        """The server stops: let loads under way finish, then stop every worker."""
        self.closing = True
        for slot in self.slots:
            cancel_timer(slot)
        loads = [s.loading for s in self.slots if s.loading is not None]
        await asyncio.gather(*loads, *self._tasks, return_exceptions=True)
        for slot in self.slots:
            if slot.service is not None:
                worker = slot.service.worker
                slot.state, slot.service = "unloaded", None
                await run_in_threadpool(worker.stop)
        self._notify()  # requests still waiting get 503

    def stop_all(self) -> None:
        """close() for callers without an event loop."""
        for service in [s.service for s in self.slots if s.service is not None]:
            service.worker.stop()

    # -- waiting for a change ------------------------------------------------------

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._changed, self._load_lock = loop, asyncio.Event(), asyncio.Lock()

    def _change(self) -> asyncio.Event:
        """The event the next change sets; take it before checking the state."""
        self._bind()
        return self._changed

    def _notify(self) -> None:
        """A slot changed: wake everyone waiting; later waiters take a fresh event."""
        self._bind()
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, changed: asyncio.Event, slot: Slot, deadline: float | None) -> None:
        """Wait for `changed`; past `deadline`, answer 503."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(changed.wait(), left)
        except asyncio.TimeoutError:
            raise ApiError(
                503,
                f"Model {slot.spec.name!r} is not loaded and all {self.max_loaded} model "
                "places are taken by models with requests running (--max-loaded-models); "
                "retry, or raise --max-loaded-models.",
                code="models_busy",
                headers={"Retry-After": "1"},
            ) from None

    # -- loading ------------------------------------------------------------

    async def _ensure_loaded(self, slot: Slot, deadline: float | None) -> bool:
        """Wait until `slot` is loaded, loading it when there is room (after unloading
        the least recently used idle model if need be); True if this call waited."""
        waited = False
        while slot.state != "loaded":
            waited = True
            check_open(self)
            changed = self._change()
            if slot.state == "loading":
                await self._await_load(slot, deadline)
                continue
            if slot.state == "unloaded":
                taken = [s for s in self.slots if s.state != "unloaded"]
                if len(taken) < self.max_loaded:
                    self._start_load(slot)
                    continue
                idle = [s for s in taken if s.state == "loaded" and not s.in_use]
                if idle:
                    await self._unload(min(idle, key=lambda s: s.last_used))
                    continue
            await self._wait(changed, slot, deadline)  # unloading, or no room yet
        cancel_timer(slot)  # in use: its keep-alive starts over when the request ends
        slot.expires_at = None
        return waited

    def _start_load(self, slot: Slot) -> None:
        slot.state = "loading"
        slot.loading = asyncio.ensure_future(self._load(slot))
        # Every waiter sees a failure; this keeps asyncio quiet when none is left.
        slot.loading.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _await_load(self, slot: Slot, deadline: float | None) -> None:
        """Wait for the load under way (shielded: a request that gives up doesn't stop it)."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(asyncio.shield(slot.loading), left)
        except asyncio.TimeoutError:
            raise ApiError(
                503,
                f"Model {slot.spec.name!r} is still loading; retry in a moment.",
                code="model_loading",
                headers={"Retry-After": "1"},
            ) from None

    async def _load(self, slot: Slot) -> None:
        try:
            async with self._load_lock:  # one load at a time: loads don't stack up in memory
                if self.closing:
                    raise RuntimeError("the server is stopping")
                worker = await run_in_threadpool(self._start_worker, slot)
        except BaseException as e:  # the slot must never stay "loading"
            slot.state, slot.loading = "unloaded", None
            self._notify()
            if not isinstance(e, Exception):
                raise
            log.error("Loading model %r (%s) failed: %r", slot.spec.name, slot.spec.source, e)
            raise LoadFailed(
                500,
                f"Loading model {slot.spec.name!r} ({slot.spec.source}) failed: "
                f"{type(e).__name__}: {e}. The next request for it tries again.",
                code="model_load_failed",
            ) from e
        self._install(slot, worker)
        self._settle(slot, None)  # its clock runs if every request gave up waiting
        self._notify()

    def _start_worker(self, slot: Slot) -> Worker:
        return Worker(slot.spec.load, limits=self.limits, metrics=self.metrics).start()

    def _install(self, slot: Slot, worker: Worker) -> None:
        slot.service = EmbeddingService(worker, slot.spec.name, *self.service_options)
        slot.state, slot.loading, slot.unload_asked = "loaded", None, False
        slot.size, slot.loaded_at = weight_bytes(worker.model), time.time()
        slot.last_used = time.monotonic()

    # -- unloading ------------------------------------------------------------

    def _begin_unload(self, slot: Slot) -> EmbeddingService:
        """Mark `slot` unloading (no await before this: nobody can pick it up meanwhile)."""
        service = slot.service
        slot.state, slot.service, slot.expires_at = "unloading", None, None
        slot.unload_asked = False
        cancel_timer(slot)
        return service

    async def _unload(self, slot: Slot, service: EmbeddingService | None = None) -> None:
        service = service or self._begin_unload(slot)
        try:
            await run_in_threadpool(free, service)
        finally:
            slot.state, slot.size = "unloaded", 0
            self._notify()

    def _settle(self, slot: Slot, keep_alive: float | None) -> None:
        """After a request: keep the model for `keep_alive` (or its own or the server's)."""
        self._bind()
        if keep_alive is None:
            keep_alive = slot.spec.keep_alive
        keep_alive = self.keep_alive if keep_alive is None else keep_alive
        slot.keep_alive = FOREVER if keep_alive < 0 else keep_alive
        if slot.in_use or slot.state != "loaded":
            return
        cancel_timer(slot)
        if slot.unload_asked or slot.keep_alive <= 0:
            self._expire(slot)
        elif slot.keep_alive == FOREVER:
            slot.expires_at = None
        else:
            slot.expires_at = time.time() + slot.keep_alive
            slot.timer = self._loop.call_later(slot.keep_alive, self._expire, slot)

    def _expire(self, slot: Slot) -> None:
        slot.timer = None
        if slot.state == "loaded" and not slot.in_use:
            task = asyncio.ensure_future(self._unload(slot, self._begin_unload(slot)))
            self._tasks.add(task)  # held, or the task may be collected half done
            task.add_done_callback(self._tasks.discard)


def check_open(registry: ModelRegistry) -> None:
    if registry.closing:
        raise ApiError(503, "The server is stopping.", code="server_stopping")


def cancel_timer(slot: Slot) -> None:
    if slot.timer is not None:
        slot.timer.cancel()
        slot.timer = None
