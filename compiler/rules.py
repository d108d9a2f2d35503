"""Rules across fields, checked once every field is valid on its own: shapes, task, loss, monitors."""

from __future__ import annotations

import math

from nnspec.preprocessing import shape_text

from .base import type_tag, union_members
from .data import DataInfo
from .errors import ShapeError, did_you_mean
from .layers import chain_shapes
from .losses import LossSpec
from .metrics import monitors
from .spec import Spec


def check_rules(spec: Spec, info: DataInfo) -> list[tuple]:
    """Every cross-field problem as (path, message, layer_type or None)."""
    out: list[tuple] = []
    task, tr = spec.task, spec.training

    shape = spec.model.input_shape(info.net_shape)
    if math.prod(shape) != math.prod(info.net_shape):
        out.append((("model", "input", "shape"), f"the data's samples have shape {shape_text(info.net_shape)} "
                    f"({math.prod(info.net_shape)} values), which cannot be reshaped to {shape_text(shape)}", None))
    else:
        try:
            final = chain_shapes(spec.model.layers, shape, ("model", "layers"))
        except ShapeError as e:
            out.append((e.path, e.message, e.layer_type))
        else:
            last = ("model", "layers", len(spec.model.layers) - 1)
            want = {"classification": len(info.labels or []), "binary": 1, "regression": len(info.targets or [])}[task]
            # else the task rule below says why (no labels/targets, or a single class: no head size is right)
            known = info.targets is not None if task == "regression" else info.labels is not None and len(info.labels) >= 2
            if len(final) != 1:
                out.append((last, f"the network must end in a flat (outputs,) shape, got {shape_text(final)}; add a flatten layer", None))
            elif known and final[0] != want:
                what = {"classification": f"one per class ({want} classes)", "binary": "one logit for the positive class",
                        "regression": f"one per target ({want})"}[task]
                out.append((last, f"the network ends with {final[0]} outputs, but a {task} task needs {want}: {what}", None))

    if task in ("classification", "binary"):
        n = len(info.labels or [])
        if info.labels is None:
            out.append((("task",), f"{task} needs class labels, but data.source gives regression targets; use task: regression", None))
        elif n < 2:
            out.append((("data", "source"), f"the data has only one class ({', '.join(info.labels)}); a classifier needs at least two", None))
        elif task == "binary" and n != 2:
            out.append((("task",), f"a binary task needs exactly two classes, the data has {n}; use task: classification", None))
    elif info.labels is not None and info.targets is None:
        out.append((("task",), "regression needs numeric targets, but data.source gives class labels", None))

    if tr.loss.task != task:
        right = [type_tag(m) for m in union_members(LossSpec) if m.task == task]
        out.append((("training", "loss", "type"), f"loss '{tr.loss.type}' is for {tr.loss.task} tasks; a {task} task uses {' or '.join(right)}", None))
    weights = getattr(tr.loss, "class_weights", None)
    if isinstance(weights, list) and info.labels and len(weights) != len(info.labels):
        out.append((("training", "loss", "class_weights"), f"needs one weight per class ({len(info.labels)}), got {len(weights)}", None))

    valid = monitors(task)
    watched = []
    if tr.scheduler is not None and tr.scheduler.type == "plateau":
        watched.append((("training", "scheduler", "monitor"), tr.scheduler.monitor))
    if tr.early_stopping is not None:
        watched.append((("training", "early_stopping", "monitor"), tr.early_stopping.monitor))
    for path, name in watched:
        if name not in valid:
            out.append((path, f"unknown metric '{name}' for a {task} task{did_you_mean(name, valid)}; valid: {', '.join(valid)}", None))
    if watched and spec.data.split.validation == 0 and "validation" not in info.fixed:
        out.append((("data", "split", "validation"), "monitoring a validation metric needs a validation split > 0", None))

    if tr.scheduler is not None and tr.scheduler.warmup_epochs >= tr.epochs:
        out.append((("training", "scheduler", "warmup_epochs"), f"must be less than training.epochs ({tr.epochs})", None))
    if spec.data.split.stratify and task == "regression":
        out.append((("data", "split", "stratify"), "stratified splits need class labels; regression targets cannot be stratified", None))
    if spec.data.preprocessing.normalize_target and task != "regression":
        out.append((("data", "preprocessing", "normalize_target"), "only regression targets can be normalized", None))
    for i, aug in enumerate(tr.augmentation):
        if aug.needs_image and len(shape) != 3:
            out.append((("training", "augmentation", i), f"{aug.type} needs image inputs (C, H, W), the model's input is {shape_text(shape)}", None))
    out += _fixed_split_rules(spec, info)
    out += _missing_rules(spec)
    if tr.precision == "fp16" and tr.device in ("cpu", "mps"):
        out.append((("training", "precision"), f"fp16 autocast needs a CUDA device, training.device is '{tr.device}'; use bf16 or fp32", None))
    return out


def _fixed_split_rules(spec: Spec, info: DataInfo) -> list[tuple]:
    """A split the source brings itself (a test_path, x_test/y_test, a test/ folder, mnist1d's test set)
    and a fraction for it in data.split: both lines are pointed at."""
    out = []
    split = spec.data.split
    for name, fixed in info.fixed.items():
        # the default is allowed, so that a resolved spec (every default written out) validates again
        if name in split.model_fields_set and getattr(split, name) != type(split).model_fields[name].default:
            out.append((("data", "split", name), f"{fixed.by} brings its own {name} set ({fixed.samples} samples); remove split.{name}", None))
            if fixed.key:
                out.append((("data", "source", fixed.key), f"gives the {name} set ({fixed.samples} samples), so data.split.{name} "
                                                            "must stay unset; remove one of them", None))
    return out


def _missing_rules(spec: Spec) -> list[tuple]:
    """numeric: constant needs its fill_value, and only it takes one."""
    missing = spec.data.preprocessing.missing
    at = ("data", "preprocessing", "missing")
    if missing.numeric == "constant" and missing.fill_value is None:
        return [(at + ("numeric",), "constant fills gaps with fill_value; set data.preprocessing.missing.fill_value", None)]
    if missing.numeric != "constant" and missing.fill_value is not None:
        return [(at + ("fill_value",), f"only numeric: constant uses fill_value (numeric is {missing.numeric})", None)]
    return []
