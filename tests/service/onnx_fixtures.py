"""Tiny model repositories built with onnx.helper (no torch) that follow docs/ARCHITECTURE.md.

Each model is linear (+ softmax/argmax for classifiers) with seeded weights, so tests can
compute the expected answer with numpy via `reference(name, x, seed)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnspec.runtime.repository import publish_version, write_config_pbtxt

FEATURES = [
    {"name": "age", "type": "numeric"},
    {"name": "color", "type": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "income", "type": "numeric"},
]
# name -> (task, input shape, labels or targets, extra manifest fields)
MODELS = {
    "iris": ("classification", [4], ["setosa", "versicolor", "virginica"], {}),
    "credit": ("binary", [5], ["no", "yes"], {"features": FEATURES}),
    "housing": ("regression", [3], ["price", "rent"], {}),
    "digits8": ("classification", [1, 8, 8], [str(d) for d in range(10)],
                {"image": {"size": [8, 8], "color": "grayscale"}}),
}


def weights(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (W, b) of model `name` for a seed."""
    task, shape, names, _ = MODELS[name]
    rng = np.random.default_rng(seed)
    inputs = int(np.prod(shape))
    scale = 0.01 if "image" in MODELS[name][3] else 0.5  # raw pixels are 0..255
    return (rng.normal(0, scale, (inputs, len(names))).astype(np.float32),
            rng.normal(0, 0.1, len(names)).astype(np.float32))


def reference(name: str, x: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    """What the ONNX graph computes, in numpy."""
    w, b = weights(name, seed)
    z = x.reshape(len(x), -1).astype(np.float32) @ w + b
    if MODELS[name][0] == "regression":
        return {"values": z}
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return {"probabilities": p, "class_index": p.argmax(axis=1)}


def build_onnx(name: str, seed: int = 1) -> bytes:
    """The serialized ONNX model: input `input` [batch, *shape] -> the contract's outputs."""
    task, shape, names, _ = MODELS[name]
    w, b = weights(name, seed)
    nodes, src = [], "input"
    if len(shape) > 1:
        nodes.append(helper.make_node("Flatten", ["input"], ["flat"], axis=1))
        src = "flat"
    nodes += [helper.make_node("MatMul", [src, "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["logits"])]
    k = len(names)
    if task == "regression":
        nodes.append(helper.make_node("Identity", ["logits"], ["values"]))
        outputs = [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", k])]
    else:
        nodes += [helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
                  helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0)]
        outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", k]),
                   helper.make_tensor_value_info("class_index", TensorProto.INT64, ["batch"])]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
        outputs, initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest(name: str, max_batch_size: int = 64, max_queue_delay_ms: float = 2.0) -> dict:
    """The contract's `nnspec.json` for a fixture model."""
    task, shape, names, extra = MODELS[name]
    k = len(names)
    if task == "regression":
        outputs = [{"name": "values", "dtype": "float32", "shape": [k]}]
    else:
        outputs = [{"name": "probabilities", "dtype": "float32", "shape": [k]},
                   {"name": "class_index", "dtype": "int64", "shape": []}]
    return {
        "manifest_version": 1, "name": name, "task": task,
        "input": {"name": "input", "dtype": "float32", "shape": shape},
        "features": extra.get("features"), "image": extra.get("image"),
        "labels": None if task == "regression" else names,
        "targets": names if task == "regression" else None,
        "outputs": outputs,
        "serving": {"max_batch_size": max_batch_size, "max_queue_delay_ms": max_queue_delay_ms},
        "metrics": {"validation": {}, "test": {}},
        "spec_hash": "sha256:fixture", "created": "2026-01-01T00:00:00Z",
        "versions": {"nnspec": "0.1.0", "onnx": onnx.__version__},
    }


def publish(repo: Path, name: str, seed: int = 1, version: int | None = None, **serving) -> tuple[int, Path]:
    """Publish one fixture model version into `repo` (with its config.pbtxt)."""
    m = manifest(name, **serving)
    files = {"model.onnx": build_onnx(name, seed), "README.md": f"# {name}\n\nA test fixture (seed {seed}).\n".encode()}
    result = publish_version(repo, name, m, files, version=version)
    write_config_pbtxt(repo, name, m)
    return result


def build_repo(repo: Path, names=tuple(MODELS), **serving) -> Path:
    """A repository holding version 1 of each fixture model."""
    for name in names:
        publish(repo, name, **serving)
    return repo


def png(pixels: np.ndarray) -> bytes:
    """Encode a uint8 array (H, W) or (H, W, 3) as PNG bytes."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()
