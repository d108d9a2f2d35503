"""Serving throughput with the model pages on and off (`NNSPEC_UI`), with bench/serve.py's servers and load.

    python bench/ui_overhead.py [--rounds 8] [--seconds 2] [--out docs/BENCHMARKS.md]

Each round starts `nnspec serve` (batching on) twice over the same MLP, once with the pages and once
without, in alternating order, and loads each at every concurrency; the report gives the median
req/s of each and the median of the per-round ratios (on / off), which a noisy machine affects least.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import serve

SERVER = "nnspec, batching on"
CONCURRENCY = (1, 16)


def measure(rounds: int, seconds: float, load: str) -> dict[str, dict[int, list[float]]]:
    """req/s per setting ("on", "off") and concurrency, one value per round."""
    repo = Path(tempfile.mkdtemp(prefix="nnspec-ui-bench-"))
    info = serve.build_models(repo, ["mlp"])
    args = argparse.Namespace(loop="auto", http="auto", threads_on=None, threads_off=None, baseline=None)
    results = {ui: {c: [] for c in CONCURRENCY} for ui in ("on", "off")}
    try:
        for round_ in range(rounds):
            for ui in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                os.environ["NNSPEC_UI"] = "true" if ui == "on" else "false"  # the server process reads it
                proc, url = serve.start_server(SERVER, "mlp", info, repo, args)
                try:
                    serve.run_load(load, url, info["mlp"]["shape"], 16, 1)  # warm-up
                    for c in CONCURRENCY:
                        rps = serve.run_load(load, url, info["mlp"]["shape"], c, seconds)["rps"]
                        results[ui][c].append(rps)
                        print(f"round {round_ + 1} UI {ui:3} c={c:<3} {rps:7.0f} req/s", file=sys.stderr, flush=True)
                finally:
                    proc.terminate()
                    proc.wait(10)
    finally:
        os.environ.pop("NNSPEC_UI", None)
        shutil.rmtree(repo, ignore_errors=True)
    return results


def report(results: dict, args, started: str) -> str:
    """The markdown section."""
    lines = ["## Serving with the model pages on and off", "",
             f"`python bench/ui_overhead.py --rounds {args.rounds} --seconds {args.seconds:g}` on {started}, "
             f"{serve.machine()}; load: {args.load}; MLP 64-64-10, `{SERVER}`, one server process at a time, "
             "pages on and off alternating in each round.", "",
             "| concurrency | pages on (median req/s) | pages off (median req/s) | on / off (median of round ratios) |",
             "|---|---|---|---|"]
    for c in CONCURRENCY:
        on, off = results["on"][c], results["off"][c]
        ratio = np.median(np.array(on) / np.array(off))
        lines.append(f"| {c} | {np.median(on):.0f} | {np.median(off):.0f} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    parser.add_argument("--load", choices=["wrk", "aiohttp"], default="wrk" if shutil.which("wrk") else "aiohttp")
    parser.add_argument("--out", type=Path, help="markdown file whose section to write")
    args = parser.parse_args()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = report(measure(args.rounds, args.seconds, args.load), args, started)
    print(section)
    if args.out:
        serve.write_section(args.out, section)


if __name__ == "__main__":
    main()
