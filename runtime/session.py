"""A torch-free onnxruntime session over one model version: validate, encode, run, format.

Predictions (`format_predictions`, `predict`) are one dict per instance:

* classifiers (`classification`, `binary`): `{"label": "3", "class_index": 3,
  "probabilities": {"0": 0.01, ..., "9": 0.002}}`
* regressors: `{"values": {"<target>": 1.25, ...}}`
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nnspec.preprocessing import (MAX_IMAGE_PIXELS, ImageError, InputError, TableEncoder, check_pixel_budget,
                                  decode_image, finite_float32, shape_text, show_value)

from .repository import MODEL_FILE, read_manifest

_CLASSIFIER_TASKS = ("classification", "binary")


class ModelSession:
    """One model version: its manifest and an onnxruntime CPU session."""

    def __init__(self, model_dir: str | os.PathLike, intra_op_threads: int | None = None,
                 inter_op_threads: int | None = None, spin: bool = True):
        """`spin=False`: onnxruntime's idle pool threads sleep instead of spinning between runs
        (a server whose event loop shares the cores with them wants that)."""
        self.dir = Path(model_dir)
        self.manifest = read_manifest(self.dir)
        m = self.manifest
        self.name: str = m["name"]
        # The folder's name is the version (the manifest's copy may be stale after a copy or rename).
        self.version: int | None = int(self.dir.name) if self.dir.name.isdigit() else None
        self.task: str = m["task"]
        self.input_name: str = m["input"].get("name", "input")
        self.input_shape: tuple[int, ...] = tuple(m["input"]["shape"])
        self.outputs: list[dict] = list(m["outputs"])
        self.output_names: list[str] = [o["name"] for o in self.outputs]
        self.features: list[dict] | None = m.get("features")
        self.image: dict | None = m.get("image")
        self.labels: list[str] | None = m.get("labels")
        self.targets: list[str] | None = m.get("targets")
        serving = m.get("serving") or {}
        self.max_batch_size = int(serving.get("max_batch_size", 64))
        self.max_queue_delay_ms = float(serving.get("max_queue_delay_ms", 2.0))
        self._table = TableEncoder(self.features) if self.features else None

        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if inter_op_threads:
            options.inter_op_num_threads = inter_op_threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ValueError(f"{self.dir / MODEL_FILE}: cannot load ({exc})") from None
        self._check_graph_input()

    def _check_graph_input(self) -> None:
        # A contradiction between the manifest and the graph would fail every request: refuse the version instead.
        graph_inputs = self._session.get_inputs()
        names = [i.name for i in graph_inputs]
        if names != [self.input_name]:
            raise ValueError(f"{self.dir}: graph inputs {names} != [{self.input_name!r}]")
        dims = graph_inputs[0].shape  # ints where static; names or None where dynamic (the batch axis)
        static = [d if isinstance(d, int) and d > 0 else None for d in dims[1:]]
        if len(dims) != len(self.input_shape) + 1 or any(
                d is not None and d != m for d, m in zip(static, self.input_shape)):
            graph = shape_text(["batch" if d is None else d for d in [None, *static]], "list")
            raise ValueError(f"{self.dir}: manifest input.shape {list(self.input_shape)} does not match "
                             f"the graph input {graph}")

    @property
    def is_classifier(self) -> bool:
        """True for classification and binary tasks."""
        return self.task in _CLASSIFIER_TASKS

    # --- encoding -------------------------------------------------------------------------

    def holds_image_files(self, instances: object) -> bool:
        """True when `encode_instances` would decode these instances as image files (`{"b64": ...}`)."""
        return bool(self.image) and isinstance(instances, list) and any(isinstance(i, dict) for i in instances)

    def encode_instances(self, instances: list, path: str = "instances", max_pixels: int | None = None) -> np.ndarray:
        """Turn JSON instances into the float32 input batch, or raise InputError naming the value
        (PixelBudgetError when image files hold more than `max_pixels` together)."""
        if not isinstance(instances, list) or not instances:
            raise InputError(path, "expected a non-empty list of instances")
        if self._table:
            return self._table.encode_instances(instances, path)
        if self.holds_image_files(instances):
            return self._encode_b64_images(instances, path, max_pixels)
        try:
            batch = np.asarray(instances)
        except (ValueError, TypeError):
            batch = None  # ragged: the walk below says where
        if batch is None or batch.dtype.kind not in "iuf" or batch.shape[1:] != self.input_shape:
            for i, instance in enumerate(instances):
                self._check_nested(instance, self.input_shape, f"{path}[{i}]")
            batch = np.array(instances, dtype=np.float64)  # valid, but ints beyond int64
        with np.errstate(over="ignore"):
            return self._finite(batch.astype(np.float32, copy=False), path)

    def _check_nested(self, value, shape: tuple[int, ...], path: str) -> None:
        expected = f"(instance shape {shape_text(self.input_shape, 'list')})"
        if not shape:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(path, f"expected a number, got {show_value(value)}")
            if not finite_float32(value):
                raise InputError(path, f"expected a finite float32 number, got {value!r}")
            return
        if not isinstance(value, list) or len(value) != shape[0]:
            got = f"a list of length {len(value)}" if isinstance(value, list) else show_value(value)
            raise InputError(path, f"expected a list of length {shape[0]} {expected}, got {got}")
        for j, item in enumerate(value):
            self._check_nested(item, shape[1:], f"{path}[{j}]")

    def _finite(self, batch: np.ndarray, path: str) -> np.ndarray:
        if np.count_nonzero(np.isfinite(batch)) != batch.size:  # a third cheaper than .all() (no Python wrapper)
            # NaN is a missing value in the columns the graph fills (table features with gaps in training)
            bad = self._table.refused(batch) if self._table else ~np.isfinite(batch)
            if not bad.any():
                return batch
            index = np.argwhere(bad)[0]
            where = path + "".join(f"[{k}]" for k in index)
            raise InputError(where, f"expected a finite float32 number, got {batch[tuple(index)]}")
        return batch

    def _encode_b64_images(self, instances: list, path: str, max_pixels: int | None) -> np.ndarray:
        # TF-Serving convention: an image instance may be {"b64": "<base64 image file>"}
        images = []
        for i, instance in enumerate(instances):
            if not (isinstance(instance, dict) and set(instance) == {"b64"} and isinstance(instance["b64"], str)):
                raise InputError(f"{path}[{i}]", 'expected {"b64": "<base64 image>"} like the other instances')
            try:
                images.append(base64.b64decode(instance["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise InputError(f"{path}[{i}].b64", "not valid base64") from None
        return self.encode_images(images, path, max_pixels)

    def encode_images(self, images: list[bytes], path: str = "images", max_pixels: int | None = None) -> np.ndarray:
        """Decode image files, convert to the manifest's color, resize; float32 0..255 [N, C, H, W].
        With `max_pixels`, their headers are checked against that budget before any is decoded."""
        if not self.image:
            raise InputError(path, f"model {self.name!r} does not take images")
        if max_pixels is not None:
            check_pixel_budget(images, max_pixels, path)
        limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels  # the budget covers each image too
        out = np.empty((len(images),) + self.input_shape, dtype=np.float32)
        for i, data in enumerate(images):
            try:
                out[i] = decode_image(data, self.image["size"], self.image.get("color", "grayscale"), limit)
            except ImageError as exc:
                raise InputError(f"{path}[{i}]", str(exc)) from None
        return out

    def encode_feature_columns(self, columns: dict[str, np.ndarray], paths: dict[str, str]) -> np.ndarray:
        """A table model's raw feature columns by name -> the float32 input batch, or InputError at
        `paths[name][row]`."""
        if not self._table:
            raise InputError("input", f"model {self.name!r} has no table features")
        return self._table.encode_feature_columns(columns, paths)

    # --- running --------------------------------------------------------------------------

    def check_batch(self, x: np.ndarray, path: str = "input") -> np.ndarray:
        """Check a ready batch (shape [N, *input.shape], numeric, finite); return it as float32."""
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iuf":
            raise InputError(path, "expected a numeric array")
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape or x.shape[0] < 1:
            raise InputError(path, f"expected shape {shape_text(('N',) + self.input_shape, 'list')}, "
                                   f"got {shape_text(x.shape, 'list')}")
        with np.errstate(over="ignore"):
            return self._finite(x.astype(np.float32, copy=False), path)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Check a batch and run it; returns every graph output by name."""
        return self.run_unchecked(self.check_batch(x))

    def run_unchecked(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run a float32 batch that the caller has already checked (the server's hot path)."""
        return dict(zip(self.output_names, self._session.run(self.output_names, {self.input_name: x})))

    def time_run(self, rows: int, repeats: int = 5) -> float:
        """The fastest of `repeats` runs of `run_unchecked` on `rows` zero rows, in seconds, after an untimed
        one (the first run is slow): the model's own cost, without what other processes took from it."""
        x = np.zeros((rows, *self.input_shape), np.float32)
        self.run_unchecked(x)
        fastest = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            self.run_unchecked(x)
            fastest = min(fastest, time.perf_counter() - started)
        return fastest

    def format_predictions(self, outputs: dict[str, np.ndarray]) -> list[dict]:
        """One prediction dict per row (see the module docstring for the shape)."""
        if self.is_classifier:
            probs = outputs["probabilities"]
            labels = self.labels or [str(k) for k in range(probs.shape[1])]
            indices = outputs["class_index"].reshape(-1).tolist() if "class_index" in outputs \
                else probs.argmax(axis=1).tolist()
            return [{"label": labels[k], "class_index": k, "probabilities": dict(zip(labels, row))}
                    for k, row in zip(indices, probs.tolist())]
        values = outputs["values"]
        values = values.reshape(len(values), -1)
        targets = self.targets or [str(k) for k in range(values.shape[1])]
        return [{"values": dict(zip(targets, row))} for row in values.tolist()]

    def predict(self, instances: list) -> list[dict]:
        """Encode instances, run them and format the predictions."""
        return self.format_predictions(self.run(self.encode_instances(instances)))

    def metadata(self) -> dict:
        """What a client needs to call the model: task, input, features, image, labels/targets."""
        return {
            "name": self.name, "version": self.version, "task": self.task,
            "input": {"name": self.input_name, "dtype": "float32", "shape": list(self.input_shape)},
            "outputs": self.outputs, "features": self.features, "image": self.image,
            "labels": self.labels, "targets": self.targets,
            "metrics": self.manifest.get("metrics"),
        }
