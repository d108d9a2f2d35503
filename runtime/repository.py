"""The model repository: Triton's layout, `models/<name>/<version>/`, published atomically.

Torch-free: the server and `nnspec predict` read repositories with this module alone.
A folder whose name is a positive integer and that holds `model.onnx` + `nnspec.json` is a
complete version; everything else (dot-folders, half-written folders) is ignored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from .files import atomic_write_text

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "nnspec.json"
CONFIG_FILE = "config.pbtxt"
PLOTS = ("curves.png", "confusion.png")  # the run's plots, copied into a version for the model page
NAME_PATTERN = "[a-z0-9][a-z0-9_-]*"  # a model name (at most MAX_NAME_LENGTH characters)
VERSION_PATTERN = "[1-9][0-9]{0,17}"  # a version: a positive integer below 10**18
MAX_NAME_LENGTH = 128
_NAME = re.compile(NAME_PATTERN + r"\Z")
_VERSION = re.compile(VERSION_PATTERN + r"\Z")
_TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}

Stager = Callable[[Path], None]


class RepositoryError(ValueError):
    """A bad model name or version, a missing model, or an unreadable manifest."""


def check_name(name: object) -> str:
    """Return `name` if it is a valid model name (`[a-z0-9][a-z0-9_-]*`), else raise."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise RepositoryError(f"invalid model name {name!r}: expected [a-z0-9][a-z0-9_-]*")
    return name


def check_version(version: object) -> int:
    """Return `version` as a positive int (accepts digit strings), else raise."""
    if isinstance(version, int) and not isinstance(version, bool) and 0 < version < 10**18:
        return version
    if isinstance(version, str) and _VERSION.match(version):
        return int(version)
    raise RepositoryError(f"invalid version {version!r}: expected a positive integer")


def model_dir(repo: str | os.PathLike, name: str) -> Path:
    """The folder of model `name` (validated) in `repo`."""
    return Path(repo) / check_name(name)


def version_dir(repo: str | os.PathLike, name: str, version: int | str) -> Path:
    """The folder of one version (validated name and version; the folder may not exist)."""
    return model_dir(repo, name) / str(check_version(version))


def _is_complete(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def _integer_dirs(folder: Path) -> list[int]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(e.name) for e in entries if e.is_dir() and _VERSION.match(e.name))


def list_versions(repo: str | os.PathLike, name: str) -> list[int]:
    """Complete versions of model `name`, ascending."""
    folder = model_dir(repo, name)
    return [v for v in _integer_dirs(folder) if _is_complete(folder / str(v))]


def list_models(repo: str | os.PathLike) -> dict[str, list[int]]:
    """Every model in `repo` with at least one complete version -> its versions, ascending."""
    try:
        entries = sorted(os.scandir(repo), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {}
    for entry in entries:
        if entry.is_dir() and _NAME.match(entry.name):
            versions = list_versions(repo, entry.name)
            if versions:
                found[entry.name] = versions
    return found


def latest_version(repo: str | os.PathLike, name: str) -> int | None:
    """The highest complete version of `name`, or None when it has none."""
    versions = list_versions(repo, name)
    return versions[-1] if versions else None


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and sanity-check `nnspec.json` in a version folder."""
    file = Path(path) / MANIFEST_FILE
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RepositoryError(f"{file}: no manifest") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{file}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise RepositoryError(f"{file}: manifest is not a JSON object")
    for key in ("name", "task", "input", "outputs"):
        if key not in manifest:
            raise RepositoryError(f"{file}: manifest has no {key!r}")
    shape = manifest["input"].get("shape") if isinstance(manifest["input"], dict) else None
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise RepositoryError(f"{file}: manifest input.shape must be a list of positive ints")
    return manifest


def _stage_files(files: Mapping[str, bytes]) -> Stager:
    def stage(folder: Path) -> None:
        for rel, data in files.items():
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
                raise RepositoryError(f"invalid file name {rel!r} in a version")
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    return stage


def _write_manifest(folder: Path, manifest: Mapping, version: int) -> None:
    # The version is only known at publish time: written once, after the name, and equal to the folder's.
    fields = {}
    for key, value in manifest.items():
        fields[key] = value
        if key == "name":
            fields["version"] = version
    fields.setdefault("version", version)
    (folder / MANIFEST_FILE).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")


def publish_version(
    repo: str | os.PathLike,
    name: str,
    manifest: Mapping,
    files: Mapping[str, bytes] | Stager,
    version: int | None = None,
    overwrite: bool = False,
) -> tuple[int, Path]:
    """Publish a version atomically and return `(version, folder)`.

    `manifest` is written as `nnspec.json` with the version it gets; `files` maps the other
    relative file names to contents, or is a callback that writes them into the staging folder it
    is given. The folder is built as `<repo>/<name>/.tmp-*` and renamed into place, so readers never
    see a partial version. `version=None` takes max + 1; an existing version is refused unless
    `overwrite`.
    """
    folder = model_dir(repo, name)
    if version is not None:
        version = check_version(version)
    if "version" in manifest:
        raise RepositoryError("a manifest gets its version from the folder it is published to; drop its 'version'")
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    try:
        (files if callable(files) else _stage_files(files))(staging)
        if (staging / MANIFEST_FILE).exists():
            raise RepositoryError(f"{MANIFEST_FILE} is written from the manifest, not given as a file")
        if not (staging / MODEL_FILE).is_file():
            raise RepositoryError(f"a version needs {MODEL_FILE}")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a served folder should be readable
        while True:
            target_version = version or max(_integer_dirs(folder), default=0) + 1
            target = folder / str(target_version)
            _write_manifest(staging, manifest, target_version)
            if target.exists():
                if version is None:
                    continue  # a concurrent publisher took it: recompute max + 1
                if not overwrite:
                    raise RepositoryError(f"{name} version {version} exists (use overwrite)")
                retired = Path(tempfile.mkdtemp(prefix=".old-", dir=folder))
                os.rename(target, retired / "v")
                os.rename(staging, target)
                shutil.rmtree(retired, ignore_errors=True)
                return target_version, target
            try:
                os.rename(staging, target)
            except OSError:
                if version is None and target.exists():
                    continue  # lost a race for this number
                raise
            return target_version, target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def triton_config(manifest: dict) -> dict:
    """Triton's model config (JSON form, as `GET /v2/models/<name>/config` returns it)."""
    serving = manifest.get("serving") or {}

    def tensor(spec: dict) -> dict:
        entry = {"name": spec["name"], "data_type": _TRITON_TYPES[spec.get("dtype", "float32")]}
        if spec.get("shape"):
            entry["dims"] = list(spec["shape"])
        else:  # a per-row scalar: Triton wants a non-empty shape, reshaped away
            entry |= {"dims": [1], "reshape": {"shape": []}}
        return entry

    return {
        "name": manifest["name"],
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": int(serving.get("max_batch_size", 64)),
        "input": [tensor(manifest["input"])],
        "output": [tensor(out) for out in manifest["outputs"]],
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(round(1000 * float(serving.get("max_queue_delay_ms", 2.0))))
        },
    }


def _pbtxt(value: object, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        if all(not isinstance(v, dict) for v in value):
            return "[ " + ", ".join(_pbtxt(v, indent) for v in value) + " ]" if value else "[ ]"
        inner = indent + "  "
        items = [inner + "{\n" + _pbtxt_fields(v, inner + "  ") + inner + "}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return "{\n" + _pbtxt_fields(value, indent + "  ") + indent + "}"


def _pbtxt_fields(message: dict, indent: str) -> str:
    lines = []
    for key, value in message.items():
        sep = " " if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)) else ": "
        text = value if key == "data_type" else _pbtxt(value, indent)  # an enum: unquoted
        lines.append(f"{indent}{key}{sep}{text}\n")
    return "".join(lines)


def write_config_pbtxt(repo: str | os.PathLike, name: str, manifest: dict) -> Path:
    """Write `<repo>/<name>/config.pbtxt` (Triton, onnxruntime backend) atomically."""
    folder = model_dir(repo, name)
    folder.mkdir(parents=True, exist_ok=True)
    config = triton_config(manifest) | {"name": name}
    return atomic_write_text(folder / CONFIG_FILE, _pbtxt_fields(config, ""))
