"""Prometheus text metrics for the server: requests, tokens, queue depth, batches, latency."""

import threading


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts = buckets, [0] * len(buckets)
        self.total, self.sum = 0, 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        lines += [
            f'{name}_bucket{{le="{b:g}"}} {c}'
            for b, c in zip(self.buckets, self.counts, strict=True)
        ]
        lines += [f'{name}_bucket{{le="+Inf"}} {self.total}', f"{name}_sum {self.sum:g}"]
        return lines + [f"{name}_count {self.total}"]


class Metrics:
    """Prometheus counters for the server; updated from the event loop and the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.inputs = self.tokens = self.batches = 0
        self.cancelled = self.timed_out = self.abandoned_tokens = 0
        self.batch_requests = Histogram((1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_tokens = Histogram((64, 256, 1024, 4096, 16384, 65536))
        self.latency = Histogram((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def request(self, path: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[path, status] = self.requests.get((path, status), 0) + 1
            if seconds is not None:
                self.latency.observe(seconds)

    def embedded(self, inputs: int, tokens: int) -> None:
        with self._lock:
            self.inputs += inputs
            self.tokens += tokens

    def batch(self, requests: int, tokens: int) -> None:
        with self._lock:
            self.batches += 1
            self.batch_requests.observe(requests)
            self.batch_tokens.observe(tokens)

    def dropped(self, tokens: int, *, timed_out: bool) -> None:
        """A job dropped unfinished (client gone, or past its deadline) after `tokens`
        computed tokens."""
        with self._lock:
            if timed_out:
                self.timed_out += 1
            else:
                self.cancelled += 1
            self.abandoned_tokens += tokens

    def render(self, queue_depth: int) -> str:
        p = "mlx_jina"
        with self._lock:
            lines = [
                f"# HELP {p}_requests_total HTTP requests by path and status.",
                f"# TYPE {p}_requests_total counter",
            ]
            lines += [
                f'{p}_requests_total{{path="{path}",status="{status}"}} {n}'
                for (path, status), n in sorted(self.requests.items())
            ]
            for name, value, help_text in (
                ("inputs_total", self.inputs, "Inputs embedded."),
                ("tokens_total", self.tokens, "Tokens embedded (usage.prompt_tokens)."),
                ("batches_total", self.batches, "Forward batches run by the worker."),
                ("cancelled_total", self.cancelled, "Jobs dropped because the client left."),
                ("timed_out_total", self.timed_out, "Jobs dropped at --request-timeout."),
                (
                    "abandoned_tokens_total",
                    self.abandoned_tokens,
                    "Tokens computed for jobs that were then dropped.",
                ),
            ):
                lines += [
                    f"# HELP {p}_{name} {help_text}",
                    f"# TYPE {p}_{name} counter",
                    f"{p}_{name} {value}",
                ]
            lines += [
                f"# HELP {p}_queue_depth Requests waiting for the worker.",
                f"# TYPE {p}_queue_depth gauge",
                f"{p}_queue_depth {queue_depth}",
            ]
            lines += self.batch_requests.render(
                f"{p}_batch_requests", "Requests embedded together in one worker batch."
            )
            lines += self.batch_tokens.render(
                f"{p}_batch_tokens", "Tokens per worker batch, padding included."
            )
            lines += self.latency.render(
                f"{p}_request_duration_seconds", "Latency of /v1/embeddings requests."
            )
        return "\n".join(lines) + "\n"
