"""What the Ollama and TEI routes cost over the OpenAI route, and a model's cold load.

    python benchmarks/bench_routes.py [--rounds 100] [--layers 2] [--json routes.json]

One server in this process (uvicorn on 127.0.0.1, a thread) offers two random models
built with numpy at the published widths of small (Qwen3, the Qwen tokenizer) and nano
(EuroBERT), `--layers` deep. Latency: the same texts (1 and 16 per request) go to
/v1/embeddings, /api/embed and /embed in turn, round after round, on one keep-alive
connection each; the table gives p50/p99 per route and p50 over the OpenAI route's.
Cold load: each model is unloaded (keep_alive 0), then one /api/embed request loads it
again; its `load_duration` is the load, 5 times, median and spread.
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, build
from internals import machine, percentile, table, write_json
from live_server import live_server  # tests/, on the path through checkpoint
from mlx_jina import load
from mlx_jina.server import ModelRegistry, ModelSpec, create_app

TEXTS = [f"Document {i}: the quick brown fox jumps over the lazy dog, again." for i in range(16)]
MODELS = {"small": ("qwen3", QWEN_TOKENIZER), "nano": ("eurobert", LLAMA_TOKENIZER)}


def bodies(route: str, model: str, texts: list[str]) -> dict:
    """The same request in each API's words: document prompt, float vectors."""
    if route == "/embed":  # TEI: the default model
        return {"inputs": texts, "prompt_name": "document"}
    return {"model": model, "input": texts}  # OpenAI's and Ollama's


def latencies(url: str, rounds: int) -> dict:
    routes = ("/v1/embeddings", "/api/embed", "/embed")
    clients = {r: httpx.Client(base_url=url, timeout=120) for r in routes}
    figures = {}
    for size in (1, 16):
        times: dict[str, list[float]] = {r: [] for r in routes}
        for n in range(rounds + 3):  # 3 rounds of warm-up at this shape
            for route in routes[n % 3 :] + routes[: n % 3]:  # each route goes first in turn
                body = bodies(route, "small", TEXTS[:size])
                start = time.perf_counter()
                clients[route].post(route, json=body).raise_for_status()
                if n >= 3:
                    times[route].append(time.perf_counter() - start)
        base = statistics.median(times["/v1/embeddings"])
        figures[size] = {
            r: {"p50_ms": 1e3 * statistics.median(t), "p99_ms": 1e3 * percentile(t, 0.99),
                "vs_openai": statistics.median(t) / base}  # fmt: skip
            for r, t in times.items()
        }
    return figures


def cold_loads(url: str, repeats: int = 5) -> dict:
    figures = {}
    with httpx.Client(base_url=url, timeout=600) as client:
        for name in MODELS:
            seconds = []
            for _ in range(repeats + 1):
                client.post("/api/embed", json={"model": name, "keep_alive": 0}).raise_for_status()
                r = client.post("/api/embed", json={"model": name, "input": "a", "keep_alive": 0})
                seconds.append(r.json()["load_duration"] / 1e9)
            seconds = seconds[1:]  # the first also pays for the page cache
            figures[name] = {"median_s": statistics.median(seconds), "min_s": min(seconds),
                             "max_s": max(seconds)}  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="requests per route and size")
    parser.add_argument("--layers", type=int, default=2, help="layers of each random model")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        specs = []
        for name, (arch, tokenizer) in MODELS.items():
            folder = build(Path(tmp) / name, arch, tokenizer=tokenizer, tasks=["retrieval"],
                           dtype="float16", num_hidden_layers=args.layers)  # fmt: skip
            specs.append(ModelSpec(name, lambda f=folder: load(f), source=str(folder)))
        registry = ModelRegistry(specs, max_loaded=2)
        registry.preload()
        with live_server(create_app(registry)) as url:
            routes, loads = latencies(url, args.rounds), cold_loads(url)
    print("\n".join(table(["texts", "route", "p50 ms", "p99 ms", "p50 / OpenAI"], [
        (size, route, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['vs_openai']:.3f}")
        for size, rows in routes.items() for route, f in rows.items()
    ])))  # fmt: skip
    print()
    print("\n".join(table(["model", "cold load s, median", "min-max"], [
        (name, f"{f['median_s']:.3f}", f"{f['min_s']:.3f}-{f['max_s']:.3f}")
        for name, f in loads.items()
    ])))  # fmt: skip
    if args.json:
        write_json(args.json, {
            "date": datetime.now(timezone.utc).isoformat(), "machine": machine(),
            "python": sys.version.split()[0], "layers": args.layers, "rounds": args.rounds,
            "latency": routes, "cold_load": loads,
        })  # fmt: skip

if __name__ == "__main__":
    main()
