"""Builders shared by the runtime and e2e tests: specs written as YAML files, small data sets on
disk (CSV/Parquet tables with string columns, PNG image folders, npz archives), and the CLI.

Loaded by tests/runtime/conftest.py and handed to tests as the `h` fixture."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"


# --- specs --------------------------------------------------------------------------------

def base_spec(**sections) -> dict:
    """A tiny iris classifier; keyword arguments replace whole top-level sections or merge into
    `training`/`data`/`model` when given as dicts (use merge() for deeper changes)."""
    spec = {
        "version": 1,
        "name": "t",
        "task": "classification",
        "data": {"source": {"type": "builtin", "name": "iris"},
                 "split": {"validation": 0.2, "test": 0.2, "stratify": True, "seed": 0}},
        "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "tanh"},
                             {"type": "linear", "out_features": 3}]},
        "training": {"epochs": 3, "batch_size": 16, "loss": {"type": "cross_entropy"},
                     "optimizer": {"type": "adam", "lr": 0.01}},
    }
    return merge(spec, sections)


def merge(base: dict, changes: dict) -> dict:
    """A deep copy of base with changes merged in: dicts merge, except those naming a `type` (a new
    source, loss, optimizer ... replaces the old one whole); anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def yaml_text(data: dict) -> str:
    """A spec dict as block-style YAML text."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def spec_file(folder: Path, data: dict | str, name: str = "spec.yaml") -> Path:
    """Write a spec (a dict, or YAML text) into folder and return its path."""
    path = Path(folder) / name
    path.write_text(data if isinstance(data, str) else yaml_text(data), encoding="utf-8")
    return path


def load(folder: Path, data: dict | str, overrides=(), name: str = "spec.yaml"):
    """Write the spec and load it with nnspec.compiler.load_spec (validation included)."""
    from nnspec.compiler import load_spec

    return load_spec(spec_file(folder, data, name), list(overrides))


def image_spec(folder: Path, epochs: int):
    """A small conv net over the PNG folder `folder/images` (see image_folder), loaded."""
    return load(folder, {
        "version": 1, "name": "patterns", "task": "classification",
        "data": {"source": {"type": "image_folder", "path": "images", "image_size": 16, "color": "grayscale"},
                 "split": {"validation": 0.2, "test": 0.2, "stratify": True}},
        "model": {"layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "relu"},
                             {"type": "global_avg_pool"}, {"type": "linear", "out_features": 3}]},
        "training": {"epochs": epochs, "batch_size": 16, "loss": {"type": "cross_entropy"},
                     "optimizer": {"type": "adam", "lr": 0.03}},
    })


# --- data on disk -------------------------------------------------------------------------

COLORS = ["blue", "green", "red"]


def table(n: int = 240, seed: int = 0):
    """Two numeric columns, a string (categorical) column and a string target.

    species = "fox" when x1 + 2·[color == red] > 1, else "cat" when x2 > 0, else "owl"."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n).round(4), rng.normal(size=n).round(4)
    color = rng.choice(COLORS, size=n)
    fox = x1 + 2.0 * (color == "red") > 1
    species = np.where(fox, "fox", np.where(x2 > 0, "cat", "owl"))
    return pd.DataFrame({"x1": x1, "color": color, "x2": x2 * 10 + 50, "species": species})


def write_csv(folder: Path, frame=None, name: str = "animals.csv") -> Path:
    path = Path(folder) / name
    (table() if frame is None else frame).to_csv(path, index=False)
    return path


def table_spec(path: Path, source_type: str = "csv", **sections) -> dict:
    """A classifier over the table() columns."""
    return base_spec(**merge({
        "name": "animals",
        "data": {"source": {"type": source_type, "path": str(path), "target": "species"}},
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"}, {"type": "linear", "out_features": 3}]},
        "training": {"epochs": 25, "batch_size": 32, "optimizer": {"type": "adam", "lr": 0.02}},
    }, sections))


IMAGE_CLASSES = ("checker", "horizontal", "vertical")


def image_pattern(kind: str, size: int, rng) -> np.ndarray:
    """A uint8 grayscale stripe/checker pattern with a random phase and noise."""
    period = 4
    phase = int(rng.integers(0, period))
    i = (np.arange(size) + phase) // (period // 2) % 2
    if kind == "horizontal":
        img = np.repeat(i[:, None], size, axis=1)
    elif kind == "vertical":
        img = np.repeat(i[None, :], size, axis=0)
    else:
        img = i[:, None] ^ i[None, :]
    img = img * 180.0 + 40 + rng.normal(0, 12, size=(size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def image_folder(root: Path, per_class: int = 20, size: int = 16, seed: int = 0) -> Path:
    """root/<class>/<n>.png for the three IMAGE_CLASSES patterns (grayscale PNGs)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind in IMAGE_CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            Image.fromarray(image_pattern(kind, size, rng), mode="L").save(root / kind / f"{n}.png")
    return root


def npz_file(path: Path, n: int = 200, seed: int = 0) -> Path:
    """x (n, 2, 6) float, y in {0, 1, 2} from the sign pattern of two channel sums."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 6)).astype(np.float32)
    s = x.sum(axis=2)
    y = np.where(s[:, 0] > 0, 2, np.where(s[:, 1] > 0, 1, 0)).astype(np.int64)
    np.savez(path, x=x, y=y)
    return path


# --- the CLI ------------------------------------------------------------------------------

def cli(args: list, **kwargs):
    """The nnspec typer app in-process; a click Result."""
    from typer.testing import CliRunner

    from nnspec.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def run_nnspec(args: list, cwd: Path | None = None, timeout: float = 120, python_args=()) -> subprocess.CompletedProcess:
    """`python -m nnspec ARGS` in a subprocess."""
    env = os.environ | {"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *python_args, "-m", "nnspec", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# The CLI in a subprocess that fails (exit 99) if torch was imported by the time it exits.
TORCH_FREE = (
    "import atexit, os, sys\n"
    "def _check():\n"
    "    if 'torch' in sys.modules:\n"
    "        sys.stderr.write('torch was imported\\n'); sys.stderr.flush(); os._exit(99)\n"
    "atexit.register(_check)\n"
    "from nnspec.cli import main\n"
    "sys.argv = ['nnspec', *sys.argv[1:]]\n"
    "main()\n"
)


def run_torch_free(args: list, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that must never import torch."""
    return subprocess.run([sys.executable, "-c", TORCH_FREE, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=os.environ | {"PYTHONWARNINGS": "ignore"})


def model_config_pb2():
    """Triton's ModelConfig protobuf module (tritonclient.grpc's package __init__ needs grpcio, the
    generated module itself only protobuf)."""
    import importlib.util

    import tritonclient

    if "model_config_pb2" in sys.modules:
        return sys.modules["model_config_pb2"]
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["model_config_pb2"] = module
    return module
