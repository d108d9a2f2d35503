"""The JSON Schema file is current and explains every field, example specs open with the editor and run lines, and
validation is torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from nnspec.cli import app

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schema" / "nnspec.schema.json"
SPECS = sorted((REPO / "specs").rglob("*.yaml"))
IDS = [str(p.relative_to(REPO / "specs")) for p in SPECS]


def test_schema_file_is_up_to_date():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SCHEMA.read_text(encoding="utf-8"), "run: nnspec schema > schema/nnspec.schema.json"


def test_spec_reference_is_up_to_date():
    from nnspec.compiler.reference import reference_markdown

    assert reference_markdown() == (REPO / "docs" / "SPEC_REFERENCE.md").read_text(encoding="utf-8"), \
        "run: python -m nnspec.compiler.reference > docs/SPEC_REFERENCE.md"


def test_schema_is_closed_and_discriminated():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "name", "task", "data", "model", "training"}
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name
    layers = schema["$defs"]["ModelSpec"]["properties"]["layers"]["items"]
    assert layers["discriminator"]["propertyName"] == "type"
    assert {"linear", "conv2d", "residual", "concat", "sequential", "lstm"} <= set(layers["discriminator"]["mapping"])


def _spec_models() -> list[type[BaseModel]]:
    """Every pydantic model reachable from Spec through its field annotations, union members included."""
    from typing import get_args

    from nnspec.compiler.base import union_members
    from nnspec.compiler.spec import Spec

    seen, todo = [], [Spec]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            pending = [field.annotation]
            while pending:
                for tp in union_members(pending.pop()):
                    if isinstance(tp, type) and issubclass(tp, BaseModel):
                        todo.append(tp)
                    else:  # list[...], tuple[...], Literal[...]: look inside
                        pending.extend(a for a in get_args(tp) if a is not Ellipsis)
    return seen


def test_every_spec_field_has_a_description():
    from nnspec.compiler.augmentation import AugmentationSpec
    from nnspec.compiler.base import union_members
    from nnspec.compiler.data import DataSource
    from nnspec.compiler.layers import LAYER_CLASSES, InitSpec
    from nnspec.compiler.losses import LossSpec
    from nnspec.compiler.optimizers import OptimizerSpec
    from nnspec.compiler.schedulers import SchedulerSpec

    models = _spec_models()
    members = [m for union in (DataSource, LossSpec, OptimizerSpec, SchedulerSpec, AugmentationSpec) for m in union_members(union)]
    assert {*LAYER_CLASSES, *members, InitSpec} <= set(models), "the walk missed a union member"
    undescribed = [f"{m.__name__}.{name}" for m in models for name, field in m.model_fields.items()
                   if not (field.description or "").strip()]
    assert not undescribed, f"fields without a description: {', '.join(undescribed)}"
    multiline = [f"{m.__name__}.{name}" for m in models for name, field in m.model_fields.items() if "\n" in field.description]
    assert not multiline, f"descriptions must be one line: {', '.join(multiline)}"


def test_every_schema_property_has_a_description():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    missing = [f"{name}.{prop}" for name, definition in [("Spec", schema), *schema["$defs"].items()]
               for prop, value in definition.get("properties", {}).items() if not value.get("description", "").strip()]
    assert not missing, f"schema properties without a description: {', '.join(missing)}"


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_spec_header_lines(path: Path):
    first, second = path.read_text(encoding="utf-8").splitlines()[:2]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), first
    target = (path.parent / first[len(prefix):]).resolve()
    assert target == SCHEMA.resolve(), f"{first} points at {target}"
    assert second == f"# nnspec train {path.relative_to(REPO).as_posix()}"


@pytest.mark.slow
def test_validation_imports_no_torch():
    specs = [str(p) for p in SPECS[:10]]
    assert len(specs) >= 8
    code = (
        "import sys\n"
        "from nnspec.cli import main\n"
        "sys.argv = ['nnspec', 'validate', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'pandas', 'onnxruntime') if m in sys.modules)\n"
        "assert not heavy, f'validation imported {heavy}'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\nok ") + proc.stdout.startswith("ok ") == len(specs), proc.stdout
