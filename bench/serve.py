"""Serving benchmark: nnspec serve vs a bare ASGI endpoint vs a hand-written FastAPI one vs raw onnxruntime.

    python bench/serve.py [--seconds 3] [--repeats 3] [--load auto|wrk|aiohttp] [--out docs/BENCHMARKS.md]
    python bench/serve.py --baseline ../old-checkout/.venv/bin/python   # adds that checkout's nnspec as a row

Models (a digits-like MLP 64-64-10 and 28x28 CNNs) are built with torch and exported
following the ONNX contract (docs/ARCHITECTURE.md). Each server runs in its own process on
127.0.0.1 under the same uvicorn settings (access log off; httptools + uvloop when installed,
as a plain `uvicorn app:app` picks them); the load comes from another process: `wrk` (C, one
thread, a Lua script POSTing pre-encoded bodies) when installed, else an aiohttp client. A
fixed number of keep-alive connections (= concurrency), bounded by seconds; one row per request.
Every server/concurrency cell runs `--repeats` times, interleaved (server order rotates each
round), and the median is reported. Raw onnxruntime is an in-process loop: the ceiling, no HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)
BARE, HAND, OFF, ON = "bare ASGI + onnxruntime", "hand-written FastAPI", "nnspec, batching off", "nnspec, batching on"
SERVERS = (BARE, HAND, OFF, ON)
BASELINE = "nnspec baseline, batching on"  # --baseline: another checkout's nnspec, same settings


# --- models ---------------------------------------------------------------------------------

def _nets():
    from torch import nn

    return {
        "mlp": ([64], nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))),
        # The PyTorch examples' MNIST net (its dropout is a no-op at inference): ~12 M multiply-adds
        # per image, compute dominates a request (raw onnxruntime ~0.7 ms per image at batch 1).
        "cnn": ([1, 28, 28], nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))),
        # A wider one: ~30 M multiply-adds per image, almost all in padded 3x3 convolutions.
        "cnn-wide": ([1, 28, 28], nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))),
    }


def build_models(repo: Path, names: list[str]) -> dict[str, dict]:
    """Export the models into `repo` (Triton layout + manifest); return their info."""
    import warnings

    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT))
    from nnspec.runtime.repository import publish_version, write_config_pbtxt

    class Classifier(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            z = self.body(x)
            return torch.softmax(z, -1), torch.argmax(z, -1)

    torch.manual_seed(0)
    nets = _nets()
    info = {}
    for name in names:
        shape, body = nets[name]
        model = Classifier(body).eval()
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.rand(2, *shape),), str(path), input_names=["input"],
                              output_names=["probabilities", "class_index"], opset_version=18, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in ("input", "probabilities", "class_index")})
        manifest = {
            "manifest_version": 1, "name": name, "task": "classification",
            "input": {"name": "input", "dtype": "float32", "shape": shape},
            "features": None, "image": None, "labels": [str(d) for d in range(10)], "targets": None,
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [10]},
                        {"name": "class_index", "dtype": "int64", "shape": []}],
            "serving": {"max_batch_size": 64, "max_queue_delay_ms": 2.0},
        }
        _, folder = publish_version(repo, name, manifest, {"model.onnx": path.read_bytes()})
        write_config_pbtxt(repo, name, manifest)
        info[name] = {"shape": shape, "onnx": str(folder / "model.onnx")}
    return info


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every server runs under exactly these uvicorn settings.
UVICORN = "host='127.0.0.1', port={port}, log_level='warning', access_log=False, loop={loop!r}, http={http!r}"
SERVER_CODE = {
    HAND: "import sys, uvicorn; sys.path.insert(0, {bench!r}); from handwritten_app import create_app; "
          "uvicorn.run(create_app({onnx!r}, image={image}), " + UVICORN + ")",
    BARE: "import sys, uvicorn; sys.path.insert(0, {bench!r}); from bare_app import create_app; "
          "uvicorn.run(create_app({onnx!r}), " + UVICORN + ")",
    "nnspec": "import uvicorn; from nnspec.service.app import create_app; from nnspec.service.settings import Settings; "
              "uvicorn.run(create_app(Settings(repository={repo!r}, batching={batching}, "
              "intra_op_threads={threads!r})), " + UVICORN + ")",
}


def server_stack(loop: str, http: str) -> str:
    """What uvicorn's `auto` resolves to here, in words."""
    import importlib.util

    found = {m: importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools")}
    loop = "uvloop" if loop == "auto" and found["uvloop"] else ("asyncio" if loop == "auto" else loop)
    http = "httptools" if http == "auto" and found["httptools"] else ("h11" if http == "auto" else http)
    return f"uvicorn, loop {loop}, http {http}"


def start_server(kind: str, model: str, info: dict, repo: Path, args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = SERVER_CODE.get(kind, SERVER_CODE["nnspec"]).format(
        bench=str(ROOT / "bench"), onnx=info[model]["onnx"], image=len(info[model]["shape"]) > 1, port=port,
        repo=str(repo), batching=kind.endswith("on"), loop=args.loop, http=args.http,
        threads=args.threads_on if kind.endswith("on") else args.threads_off)
    if kind == BASELINE:  # run from its own checkout, so that `import nnspec` finds that tree
        python = Path(args.baseline)
        checkout = Path(os.path.abspath(python)).parents[2]  # CHECKOUT/.venv/bin/python (not resolved: a venv's python is a symlink)
        proc = subprocess.Popen([str(python), "-c", code], cwd=checkout if python.parent.name == "bin" else ROOT)
    else:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    path = "/predict" if kind in (BARE, HAND) else f"/v1/models/{model}:predict"
    url = f"http://127.0.0.1:{port}{path}"
    body = load_bodies(info[model]["shape"], 1)[0]
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        import urllib.request

        request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:  # the server answers: it is up
            assert r.status == 200, r.status
        return proc, url
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


# --- load -----------------------------------------------------------------------------------

def load_bodies(shape: list[int], count: int = 64) -> list[bytes]:
    """Distinct pre-encoded `{"instances": [row]}` bodies: pixels 0..255, or digits-like features."""
    rng = np.random.default_rng(0)
    high = 255 if len(shape) > 1 else 16
    return [json.dumps({"instances": [rng.uniform(0, high, shape).round(2).tolist()]}).encode()
            for _ in range(count)]


WRK_SCRIPT = """
local bodies = {%s}
local requests, i = {}, 0
function init(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
end
function request()
  i = i %% #requests + 1
  return requests[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n', summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """`wrk -t1 -c<concurrency>` for `seconds`; non-2xx answers count as failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ", ".join(f"[==[{b.decode()}]==]" for b in bodies))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s",
                              "-s", f.name, url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    r = json.loads(line[len("WRKJSON "):])
    ok = r["requests"] - r["status_errors"]
    return {"rps": ok / (r["duration_us"] / 1e6), "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
            "ok": ok, "failed": r["status_errors"] + r["socket_errors"]}


async def _aiohttp_load(url: str, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    stop_at = 0.0  # set just before the workers start

    async def worker(session, offset):
        nonlocal failures
        i = offset
        while time.perf_counter() < stop_at and len(latencies) + failures < max_requests:
            t = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)],
                                    headers={"content-type": "application/json"}) as r:
                await r.read()
                ok = r.status == 200
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                failures += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "ok": len(latencies), "failed": failures}


def aiohttp_main(url: str, shape: list[int], concurrency: int, seconds: float) -> dict:
    """Entry point of the aiohttp load process."""
    return asyncio.run(_aiohttp_load(url, load_bodies(shape), concurrency, seconds, max_requests=500_000))


def run_load(tool: str, url: str, shape: list[int], concurrency: int, seconds: float) -> dict:
    """Load from a separate process (wrk, or a Python process that does not share the server's GIL)."""
    if tool == "wrk":
        return wrk_load(url, load_bodies(shape), concurrency, seconds)
    code = ("import json, sys; sys.path.insert(0, {bench!r}); import serve; "
            "print(json.dumps(serve.aiohttp_main({url!r}, {shape!r}, {c}, {s})))").format(
        bench=str(ROOT / "bench"), url=url, shape=shape, c=concurrency, s=seconds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_onnxruntime(onnx_path: str, shape: list[int], seconds: float, threads: int | None) -> dict:
    """session.run in a loop, in process, at batch 1 and 64: no HTTP, no JSON."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 16, (1, *shape)).astype(np.float32)
    for _ in range(50):
        session.run(None, {"input": x})
    latencies, stop = [], time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        t = time.perf_counter()
        session.run(None, {"input": x})
        latencies.append(time.perf_counter() - t)
    ms = np.array(latencies) * 1000
    rps = len(ms) / (time.perf_counter() - started)
    batch = np.repeat(x, 64, axis=0)  # what batching could gain at most: rows/s at batch 64
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"input": batch})
        rows += 64
    return {"rps": rps, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "batch64_rows": rows / (time.perf_counter() - started)}


# --- report ---------------------------------------------------------------------------------

def machine() -> str:
    try:
        model = re.search(r"Model name:\s*(.+)", subprocess.run(["lscpu"], capture_output=True, text=True).stdout)
        cpu = model.group(1).strip() if model else platform.processor()
    except OSError:
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _median(cells: list[dict]) -> dict:
    """Median req/s and latencies over the rounds; failures summed (one bad round must show)."""
    return {k: float(np.median([c[k] for c in cells])) for k in ("rps", "p50", "p99")} | {
        "failed": sum(c["failed"] for c in cells)}


def report(results: dict, raw: dict, args, stack: str, started: str) -> str:
    """The markdown section, with the target ratios (median of the per-round ratios)."""
    tool = "wrk 4.1 (C, 1 thread, Lua script)" if args.load == "wrk" else "an aiohttp client (Python)"
    lines = ["## Serving", "",
             f"`python bench/serve.py --repeats {args.repeats} --seconds {args.seconds:g}` on {started}, {machine()}. "
             f"Servers: {stack}, 127.0.0.1, one process each, same settings for all. Load: {tool}, in a "
             f"separate process on loopback (client and server share the cores), one row per request, keep-alive connections = concurrency. Each cell ran "
             f"{args.repeats} times, interleaved (server order rotated every round); the table shows the "
             f"median: req/s, then p50 / p99 latency in ms. Load average (1 min) at the start and the end: "
             f"{args.load_before:.1f} and {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.", ""]
    for model in results:
        lines += [f"### {model}", "", "| server | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |",
                  "| --- |" + " --- |" * len(CONCURRENCY)]
        for threads, r in raw[model].items():
            lines.append(f"| raw onnxruntime, in process, {threads} | batch 1: {r['rps']:.0f}/s, {r['p50']:.3f} / "
                         f"{r['p99']:.3f} ms | batch 64: {r['batch64_rows']:.0f} rows/s | |")
        for server in SERVERS:
            cells = []
            for c in CONCURRENCY:
                m = _median(results[model][server][c])
                cells.append(f"{m['rps']:.0f}, {m['p50']:.1f} / {m['p99']:.1f}"
                             + (f" ({m['failed']:.0f} failed)" if m["failed"] else ""))
            lines.append(f"| {server} | " + " | ".join(cells) + " |")
        lines.append("")

    def per_round(model, a, b, c):
        runs_a, runs_b = results[model][a][c], results[model][b][c]
        return [x["rps"] / y["rps"] for x, y in zip(runs_a, runs_b)]

    if BASELINE in SERVERS:
        for model in results:
            ratios = {c: per_round(model, "nnspec, batching on", BASELINE, c) for c in CONCURRENCY}
            lines.append(f"- {model}: nnspec (batching on) / the baseline checkout's: " + ", ".join(
                f"c={c} **{np.median(r):.3f}x** (rounds {', '.join(f'{x:.2f}' for x in r)})" for c, r in ratios.items()))
    for model in results:
        if {ON, BARE} <= set(SERVERS):
            target = {"mlp": ">= 0.8x at c=16 and c=64", "cnn": ">= 1.5x at c=64"}.get(model, "none set")
            ratios = {c: per_round(model, ON, BARE, c) for c in CONCURRENCY}
            lines.append(f"- {model}: nnspec (batching on) / the bare ASGI endpoint: " + ", ".join(
                f"c={c} **{np.median(r):.2f}x** (rounds {', '.join(f'{x:.2f}' for x in r)})" for c, r in ratios.items())
                + f". Target: {target}." + (f" p99 at c=16: {_median(results[model][ON][16])['p99']:.1f} ms "
                                             f"(target < 5 ms)." if model == "mlp" and 16 in CONCURRENCY else ""))
    if "mlp" in results and {"hand-written FastAPI", "nnspec, batching off", "nnspec, batching on"} <= set(SERVERS):
        on = per_round("mlp", "nnspec, batching on", "hand-written FastAPI", 16)
        off = per_round("mlp", "nnspec, batching off", "hand-written FastAPI", 16)
        p99 = _median(results["mlp"]["nnspec, batching on"][16])["p99"]
        lines.append(f"- MLP, c=16: nnspec serve (batching on, the default) is **{np.median(on):.2f}x** the "
                     f"hand-written endpoint's req/s (rounds: {', '.join(f'{r:.2f}' for r in on)}), p99 "
                     f"{p99:.1f} ms; batching off: {np.median(off):.2f}x. Target: >= 1.5x with p99 < 20 ms.")
    for model in results:
        if model.startswith("cnn") and 64 in CONCURRENCY and {"nnspec, batching on", "nnspec, batching off"} <= set(SERVERS):
            r = per_round(model, "nnspec, batching on", "nnspec, batching off", 64)
            lines.append(f"- {model}, c=64: batching on is **{np.median(r):.2f}x** batching off "
                         f"(rounds: {', '.join(f'{x:.2f}' for x in r)}). Target: >= 2x.")
    lines += ["", READING, ""]
    return "\n".join(lines)


READING = """\
Reading it:

- Every server does the same HTTP work (uvicorn with httptools + uvloop), so differences are the
  framework and the inference path. The hand-written endpoint pays FastAPI routing, pydantic
  validation of the body, FastAPI's JSON encoding and a threadpool hop. nnspec answers `:predict`
  and V2 `infer` from a pure ASGI fast path in front of FastAPI (same handlers, the routes stay in
  FastAPI and OpenAPI), parses with orjson into numpy, and hands the batch to the model's batcher:
  the version's worker thread, or for a model whose full batch runs in under 100 µs (the MLP here)
  the event loop itself, one batch per loop turn. The bare ASGI endpoint is the limit: no framework,
  no checks, one `session.run` per request on the event loop (so a CNN request blocks its loop).
- Batching on vs off: one onnxruntime run per batch instead of per request, so the run overheads
  and the worker handoff (the worker thread needs the GIL back from a busy event loop after every
  run) are paid once per batch, and onnxruntime computes bigger batches more efficiently (compare
  the raw batch-1 and batch-64 rates). For the MLP compute is negligible, so the two are close; for
  the CNNs compute dominates. `cnn-wide` (padded 3x3 convolutions, ~30 M multiply-adds per image)
  is compute-bound already at batch 1, so onnxruntime gains less from batch size there and so
  does batching.
- Both nnspec rows use the shipped defaults: onnxruntime intra-op threads = cores per worker, pool
  threads not spinning between runs. With one intra-op thread batching off got slower (its batch-1
  runs lose the second core) while batching on did not, so the defaults are the fair setting for
  batching off.
- The machine is small (2 cores for wrk, server and onnxruntime together) and is often shared
  with other jobs, so single runs vary by 20-40%; medians of interleaved rounds are what to compare.
  (An earlier run taken while training jobs shared the machine gave 2.58x for the MLP and 1.70x
  for the CNN: the CNN ratio needs the cores to itself.)
  p99 at c=64 is dominated by queueing (64 requests in flight on 2 cores)."""


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the section of a markdown file that has `section`'s title, leaving the rest alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section.splitlines()[0])}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each cell reports the median")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(_nets()))
    parser.add_argument("--load", choices=["auto", "wrk", "aiohttp"], default="auto",
                        help="load generator; auto = wrk when installed")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop for every server")
    parser.add_argument("--http", default="auto", help="uvicorn --http for every server")
    parser.add_argument("--threads-on", type=int, help="nnspec intra-op threads, batching on (default: cores)")
    parser.add_argument("--threads-off", type=int, help="nnspec intra-op threads, batching off (default: cores)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="override the concurrencies (exploring)")
    parser.add_argument("--servers", nargs="+", help="only these servers (exploring; substrings)")
    parser.add_argument("--out", type=Path, help="markdown file whose '## Serving' section to write")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument("--baseline", help="the python of another checkout's venv: its nnspec serve is a row too")
    args = parser.parse_args()
    global CONCURRENCY, SERVERS
    if args.concurrency:
        CONCURRENCY = tuple(args.concurrency)
    if args.baseline:
        SERVERS = SERVERS + (BASELINE,)
    if args.servers:
        SERVERS = tuple(s for s in SERVERS if any(k in s for k in args.servers))
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "aiohttp"
    args.load_before = os.getloadavg()[0]  # how busy the machine was: the report says so
    stack = server_stack(args.loop, args.http)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"load: {args.load}; servers: {stack}", file=sys.stderr)
    repo = Path(tempfile.mkdtemp(prefix="nnspec-bench-"))
    info = build_models(repo, args.models)
    raw = {}
    for model in args.models:
        raw[model] = {}
        for threads in dict.fromkeys([args.threads_off, args.threads_on]):
            label = f"{threads} thread{'s' * (threads != 1)}" if threads else "default threads"
            raw[model][label] = raw_onnxruntime(info[model]["onnx"], info[model]["shape"], min(args.seconds, 2), threads)
    results = {m: {s: {c: [] for c in CONCURRENCY} for s in SERVERS} for m in args.models}
    try:
        for round_ in range(args.repeats):
            for model in args.models:
                order = SERVERS[round_ % len(SERVERS):] + SERVERS[:round_ % len(SERVERS)]
                for server in order:
                    proc, url = start_server(server, model, info, repo, args)
                    try:
                        run_load(args.load, url, info[model]["shape"], 16, 1)  # warm-up, not recorded
                        for c in CONCURRENCY:
                            stats = run_load(args.load, url, info[model]["shape"], c, args.seconds)
                            results[model][server][c].append(stats)
                            print(f"round {round_ + 1} {model:8} {server:22} c={c:<3} {stats['rps']:7.0f} req/s  "
                                  f"p50 {stats['p50']:6.1f} ms  p99 {stats['p99']:6.1f} ms  failed {stats['failed']}",
                                  file=sys.stderr, flush=True)
                    finally:
                        proc.terminate()
                        proc.wait(10)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "raw": raw, "stack": stack, "started": started}))
    section = report(results, raw, args, stack, started)
    print(section)
    if args.out:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
