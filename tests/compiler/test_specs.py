"""Every example spec validates and compiles, and its summary is what the compiled module really does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nnspec.cli import app
from nnspec.compiler import load_spec_with_data
from nnspec.compiler.compile import compile_model, summarize

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "specs").rglob("*.yaml"))


def _ids(paths):
    return [str(p.relative_to(REPO / "specs")) for p in paths]


def _module_rows(layers, container, prefix):
    """(summary path, module) for every layer spec, walking nested containers like summarize does."""
    for i, (layer, module) in enumerate(zip(layers, container, strict=True)):
        path = f"{prefix}[{i}]"
        yield path, module
        if layer.type == "sequential":  # a repeated block is listed once: its first copy
            yield from _module_rows(layer.layers, module if layer.repeat == 1 else module[0], f"{path}.layers")
        elif layer.type == "residual":
            yield from _module_rows(layer.layers, module.body, f"{path}.layers")
        elif layer.type == "concat":
            for b, branch in enumerate(layer.branches):
                yield from _module_rows(branch, module.branches[b], f"{path}.branches[{b}]")


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_there_are_example_specs():
    assert len(SPECS) >= 8


@pytest.mark.parametrize("path", SPECS, ids=_ids(SPECS))
def test_summary_matches_the_compiled_module(path: Path):
    spec, info = load_spec_with_data(path)
    model = compile_model(spec, info)
    summary = summarize(spec, info)
    assert summary["total_params"] == _params(model)
    assert summary["input_shape"] == list(spec.model.input_shape(info.shape))

    rows = list(_module_rows(spec.model.layers, model, "model.layers"))
    assert [r["path"] for r in summary["layers"]] == [p for p, _ in rows]
    seen: dict[str, tuple] = {}

    def record(path):
        def hook(module, args, output):  # returns None: a hook's return value would replace the output
            seen.setdefault(path, tuple(output.shape))
        return hook

    hooks = [module.register_forward_hook(record(p)) for p, module in rows]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, *summary["input_shape"]))
    for h in hooks:
        h.remove()
    for row, (p, module) in zip(summary["layers"], rows):
        assert seen[p] == (3, *row["output_shape"]), p
        assert row["params"] == _params(module), p
    top = [r for r in summary["layers"] if r["depth"] == 0]
    assert len(top) == len(spec.model.layers) == len(model)
    assert sum(r["params"] for r in top) == summary["total_params"]
    want = len(info.labels) if spec.task == "classification" else 1 if spec.task == "binary" else len(info.targets)
    assert tuple(out.shape) == (3, want) == (3, *top[-1]["output_shape"])

    # running the nn.Sequential's children one by one gives the same top-level shapes
    x = torch.randn(2, *summary["input_shape"])
    with torch.no_grad():
        for row, child in zip(top, model):
            x = child(x)
            assert list(x.shape[1:]) == row["output_shape"], row["path"]


@pytest.mark.slow
def test_cli_validate_every_spec_in_a_subprocess():
    script = Path(sys.executable).with_name("nnspec")  # the installed console script
    assert script.exists(), f"{script}: is nnspec installed in this environment (pip install -e .)?"
    proc = subprocess.run([str(script), "validate", *map(str, SPECS)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == len(SPECS)
    for line, path in zip(lines, SPECS):
        assert line.startswith(f"ok {path} ("), line


@pytest.mark.parametrize("path", SPECS, ids=_ids(SPECS))
def test_cli_summary_json(path: Path):
    result = CliRunner().invoke(app, ["summary", "--json", str(path)])
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == {"layers", "total_params"}
    summary = summarize(*load_spec_with_data(path))
    assert printed["total_params"] == summary["total_params"]
    assert printed["layers"] == [{k: r[k] for k in ("path", "type", "output_shape", "params")} for r in summary["layers"]]


@pytest.mark.slow
def test_cli_summary_json_in_a_subprocess_with_set():
    spec = REPO / "specs" / "digits_mlp.yaml"
    proc = subprocess.run([sys.executable, "-m", "nnspec", "summary", "--json", str(spec),
                           "--set", "model.layers.0.out_features=100"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    first = printed["layers"][0]
    assert first == {"path": "model.layers[0]", "type": "linear", "output_shape": [100], "params": 64 * 100 + 100}
    assert printed["total_params"] == sum(r["params"] for r in printed["layers"])


def test_cli_summary_of_an_invalid_spec_exits_2():
    bad = Path(__file__).parent / "invalid" / "shape_conv2d_on_flat.yaml"
    result = CliRunner().invoke(app, ["summary", "--json", str(bad)])
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{bad}:10:7: model.layers[0] (conv2d): expects input (C, H, W), got (64,)" in result.stderr


def test_cli_summary_table():
    result = CliRunner().invoke(app, ["summary", str(REPO / "specs" / "digits_resnet.yaml")])
    assert result.exit_code == 0, result.stderr
    assert "model.layers[4].layers[0]" in result.stdout and "total" in result.stdout


@pytest.mark.parametrize("path", SPECS, ids=_ids(SPECS))
def test_resolved_spec_validates_again(path: Path, tmp_path: Path):
    """A run folder keeps the spec with every default filled in (model_dump as JSON, written as YAML);
    reading it back gives the same spec (tuples come back from YAML lists)."""
    import io

    from ruamel.yaml import YAML

    from nnspec.compiler.loader import load_yaml
    from nnspec.compiler.validate import validate_data

    spec, _ = load_spec_with_data(path)
    buf = io.StringIO()
    YAML(typ="safe", pure=True).dump(spec.model_dump(mode="json"), buf)
    data, positions = load_yaml(buf.getvalue(), "resolved.yaml")
    again, _ = validate_data(data, positions, path.parent)
    assert again == spec


def test_the_readme_walkthrough_spec_validates_next_to_the_shipped_csv(tmp_path):
    """README's "The same spec by hand" runs as written: its YAML, saved beside examples/plants.csv."""
    import re
    import shutil

    from nnspec.compiler import load_spec_with_data

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The same spec by hand"):]
    text = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    shutil.copy(REPO / "examples" / "plants.csv", tmp_path / "plants.csv")
    (tmp_path / "plants.yaml").write_text(text, encoding="utf-8")
    spec, info = load_spec_with_data(tmp_path / "plants.yaml")
    assert spec.name == "plants" and info.labels == ["discard", "keep", "repot"]
    assert info.shape == (9,)  # size, color (3 + its empty cells), age, soil (3): as the README says
