"""Spec -> torch module, and the per-layer summary (shapes from the spec, parameter counts from torch)."""

from __future__ import annotations

from .data import DataInfo
from .errors import format_path
from .layers import build_chain
from .spec import Spec


def compile_model(spec: Spec, info: DataInfo):
    """The network as an nn.Sequential taking (batch, *model input shape)."""
    return build_chain(spec.model.layers, spec.model.input_shape(info.net_shape), spec.model.init)[0]


def summarize(spec: Spec, info: DataInfo) -> dict:
    """{"layers": [{"path", "type", "output_shape", "params"}...], "total_params": N}; nested layers included."""
    rows: list[dict] = []

    def walk(layers, shape, prefix, init, depth=0):
        total = 0
        for i, layer in enumerate(layers):
            path = prefix + (i,)
            out = layer.output_shape(shape)
            params = sum(p.numel() for p in layer.build(shape, init).parameters())
            rows.append({"path": format_path(path), "type": layer.type, "output_shape": list(out), "params": params,
                         "depth": depth})
            for key, children in layer.children():  # a repeated block is listed once
                walk(children, shape, path + key, getattr(layer, "init", None) or init, depth + 1)
            total += params
            shape = out
        return total

    total = walk(spec.model.layers, spec.model.input_shape(info.net_shape), ("model", "layers"), spec.model.init)
    return {"input_shape": list(spec.model.input_shape(info.net_shape)), "layers": rows, "total_params": total}
