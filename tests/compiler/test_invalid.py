"""The invalid-spec corpus: every file in invalid/ fails `nnspec validate` with exactly the issues its header names.

Header lines of each corpus file:
    # args: --set PATH=VALUE        extra command-line arguments (optional)
    # via: subprocess               run the real console command instead of typer's CliRunner
    # expect: LINE:COL: TEXT        one line per issue, in any order: the issue is reported at
                                    FILE:LINE:COL and its "PATH: MESSAGE" starts with TEXT
    # expect: --set: TEXT           the issue is labelled with the --set option instead of a line
In TEXT, `...` stands for any characters (used for absolute paths).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnspec.cli import app

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
_HEADER = re.compile(r"^# (args|via|expect): (.*)$")
# Every rule family the corpus must keep covering (file-name prefixes).
_FAMILIES = ("unknown_key_", "wrong_type_", "range_", "type_", "shape_", "rule_", "yaml_", "set_", "missing_")


def _header(path: Path) -> tuple[list[str], bool, list[tuple[str | None, str]]]:
    """(extra CLI args, run as a subprocess, [(LINE:COL or None for --set, TEXT)])."""
    args, via_subprocess, expects = [], False, []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _HEADER.match(line)
        if not m:
            break
        key, value = m.groups()
        if key == "args":
            args += shlex.split(value)
        elif key == "via":
            assert value == "subprocess", f"{path.name}: unknown via {value!r}"
            via_subprocess = True
        else:
            where, _, text = value.partition(": ")
            expects.append((None if where == "--set" else where, text))
    return args, via_subprocess, expects


def _pattern(text: str) -> str:
    return ".*".join(re.escape(part) for part in text.split("..."))


def _run(path: Path, args: list[str], via_subprocess: bool, cwd: Path) -> tuple[int, str, str]:
    if via_subprocess:
        proc = subprocess.run([sys.executable, "-m", "nnspec", "validate", str(path), *args],
                              capture_output=True, text=True, cwd=cwd, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    result = CliRunner().invoke(app, ["validate", str(path), *args])
    assert isinstance(result.exception, SystemExit), f"the CLI raised {result.exception!r}"
    return result.exit_code, result.stdout, result.stderr


def test_corpus_is_large_and_covers_every_family():
    assert len(CASES) >= 40
    for family in _FAMILIES:
        assert any(p.name.startswith(family) for p in CASES), f"no invalid spec for {family}*"
    vias = [p for p in CASES if _header(p)[1]]
    assert len(vias) >= 3, "a few cases must go through the real console command"
    for path in CASES:
        assert _header(path)[2], f"{path.name} has no '# expect:' header"


# the cases run through the real console command are slow; the others use typer's CliRunner
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if _header(p)[1] else [])
                                  for p in CASES])
def test_invalid_spec(path: Path, tmp_path: Path):
    args, via_subprocess, expects = _header(path)
    code, out, err = _run(path, args, via_subprocess, tmp_path)
    assert code == 2, f"exit code {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err
    assert out == "", "an invalid spec prints no ok line"
    lines = [line for line in err.splitlines() if line.strip()]
    set_label = next((f"--set {a}" for a in args if "=" in a), None)
    unmatched = list(lines)
    for where, text in expects:
        prefix = re.escape(f"{set_label}: " if where is None else f"{path}:{where}: ")
        hit = next((line for line in unmatched if re.match(prefix + _pattern(text), line)), None)
        assert hit is not None, f"no issue '{where}: {text}' among:\n" + "\n".join(lines)
        unmatched.remove(hit)
    assert not unmatched, "unexpected issues:\n" + "\n".join(unmatched)
    # every issue has the editor form FILE:LINE:COL: PATH: MESSAGE, or names its --set option
    for line in lines:
        assert re.match(re.escape(str(path)) + r":\d+:\d+: \S+( \(\w+\))?: \S", line) or (
            set_label and line.startswith(f"{set_label}: ")), line
    # nothing in a spec runs: the !!python/object/apply case would have created this file
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_python_tag_runs_nothing(tmp_path: Path):
    """Beyond the corpus: tags that would run code or build objects are refused before construction."""
    marker = tmp_path / "created"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\n"
        f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        f"task: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
        "data: !!python/object/new:dict {}\n"
        "model: !!python/name:os.system\n"
        "training: !!binary aGVsbG8=\n", encoding="utf-8")
    code, out, err = _run(spec, [], True, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert not marker.exists()
    for line, tag in ((2, "!!python/object/apply:os.system"), (3, "!!python/object/apply:pathlib.Path.touch"),
                      (4, "!!python/object/new:dict"), (5, "!!python/name:os.system"), (6, "!!binary")):
        assert f"{spec}:{line}:" in err and f"tag '{tag}' is not allowed" in err, err


def test_several_files_report_each_and_exit_2(tmp_path: Path):
    """One bad file among good ones: every good file still prints ok, the bad one its issues, exit 2."""
    repo = Path(__file__).resolve().parents[2]
    good = repo / "specs" / "iris.yaml"
    bad = INVALID / "range_lr_nan.yaml"
    result = CliRunner().invoke(app, ["validate", str(good), str(bad), str(good)])
    assert result.exit_code == 2
    assert result.stdout.count(f"ok {good}") == 2
    assert result.stderr.startswith(f"{bad}:15:34: training.optimizer.lr: should be a finite number")


def test_missing_spec_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{missing}: <spec>: cannot read spec: No such file or directory")


@pytest.mark.parametrize("override, message", [
    ("training.optimizer.lr", "--set training.optimizer.lr: <spec>: expected PATH=VALUE"),
    ("=3", "--set =3: <spec>: expected PATH=VALUE with a dotted path"),
    ("model.layers.7.p=0.1", "--set model.layers.7.p=0.1: model.layers[7]: index out of range (the list has 3 items)"),
    ("model.layers.first=1", "--set model.layers.first=1: model.layers: is a list; name an item by its index, 0 to 2"),
    ("name.first=x", "--set name.first=x: name: cannot set a key inside this value"),
    ("training.epochs=!!python/name:os.system", "--set training.epochs=!!python/name:os.system: training.epochs: tag '!!python/name:os.system' is not allowed"),
    ("training.epochs=[1", "--set training.epochs=[1: training.epochs: YAML syntax error"),
])
def test_malformed_overrides(override: str, message: str):
    spec = Path(__file__).resolve().parents[2] / "specs" / "iris.yaml"
    result = CliRunner().invoke(app, ["validate", str(spec), "--set", override])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.exception
    assert result.stderr.startswith(message), result.stderr
