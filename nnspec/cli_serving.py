"""The torch-free CLI commands on exported models: `predict` and `serve`."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from nnspec.cli_common import fail
from nnspec.preprocessing import IMAGE_SUFFIXES, MISSING_CELLS


class ModelControl(str, Enum):
    """Settings.model_control's values (the settings module loads only when `serve` runs)."""

    none = "none"
    explicit = "explicit"
    poll = "poll"


def _fail(message: str) -> NoReturn:
    fail(f"error: {message}")


def serve(
    repo: Annotated[Path, typer.Argument(help="model repository (Triton layout)")] = Path("models"),
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port (1-65535)")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes")] = 1,
    api_key_env: Annotated[Optional[str], typer.Option(help="env var holding the API key (models, inference)")] = None,
    model_control: Annotated[ModelControl, typer.Option(
        help="none: serve the models found at start; explicit: load/unload requests with the admin key; "
             "poll: rescan the repository")] = ModelControl.none,
    admin_key_env: Annotated[Optional[str], typer.Option(
        help="env var holding the admin key for load/unload (needed by --model-control explicit)")] = None,
    poll_seconds: Annotated[Optional[float], typer.Option(
        help="with --model-control poll: rescan the repository every S seconds (default 5)")] = None,
    allowed_hosts: Annotated[Optional[str], typer.Option(
        metavar="HOSTS", help="comma-separated Host headers to answer (*.domain: its subdomains); default: any")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        metavar="ORIGIN", help="an origin whose web pages may call the API (repeatable); default: none")] = None,
    max_body_mb: Annotated[float, typer.Option(help="request body limit (413 above)")] = 16.0,
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="dynamic batching")] = True,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="log every request (costs time per request; /metrics counts them anyway)")] = False,
    max_pixels: Annotated[int, typer.Option(help="image pixels per request, summed over its images (413 above)")] = 64_000_000,
    body_timeout: Annotated[float, typer.Option(help="seconds to receive a request body (408 after)")] = 30.0,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="the model pages at / and /models/NAME")] = True,
) -> None:
    """Serve a model repository over HTTP (KServe V1 and Open Inference Protocol V2)."""
    import uvicorn
    from pydantic import ValidationError

    from nnspec.service.app import admin_key, api_key, create_app
    from nnspec.service.metrics import MULTIPROCESS_DIR
    from nnspec.service.settings import Settings

    if not repo.is_dir():
        _fail(f"{repo}: no such model repository")
    try:
        settings = Settings(repository=repo.resolve(), api_key_env=api_key_env, model_control=model_control.value,
                            admin_key_env=admin_key_env, poll_seconds=poll_seconds, allowed_hosts=allowed_hosts or [],
                            cors_origins=cors_origin or [], max_body_mb=max_body_mb, batching=batching,
                            workers=workers, max_pixels=max_pixels, body_timeout=body_timeout, ui=ui)
    except ValidationError as exc:  # name the option, as the user typed it
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        _fail(f"--{str(first['loc'][0]).replace('_', '-')}: {message}" if first["loc"] else message)
    try:  # checked once here, for one process or several
        api_key(settings)
        admin_key(settings)
    except RuntimeError as exc:
        _fail(str(exc))
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)
        return
    # Worker processes build their own app from NNSPEC_* variables, and write their metrics to one
    # fresh folder so that /metrics reports every worker (prometheus-client's multiprocess mode).
    for variable, value in settings.environment().items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    with tempfile.TemporaryDirectory(prefix="nnspec-metrics-") as metrics_dir:
        os.environ[MULTIPROCESS_DIR] = metrics_dir
        uvicorn.run("nnspec.service.app:create_app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="info", access_log=access_log)


def _open_session(model: str, repo: Path):
    from nnspec.runtime.repository import MANIFEST_FILE, RepositoryError, latest_version, version_dir
    from nnspec.runtime.session import ModelSession

    path = Path(model)
    try:
        if (path / MANIFEST_FILE).is_file():  # a version folder
            return ModelSession(path)
        latest = _latest_in(path) if path.is_dir() else None
        if latest is not None:  # a model folder: its latest version
            return ModelSession(version_dir(path.parent, path.name, latest))
        if path.is_absolute() or model.startswith(".") or path.is_dir():
            raise RepositoryError(f"{path}: not an exported model (no {MANIFEST_FILE}, no version folders)")
        name, _, version = model.partition("/")  # NAME or NAME/VERSION in --repo
        number = version or latest_version(repo, name)
        if number is None:
            raise RepositoryError(f"model {name!r} has no version in {repo}")
        path = version_dir(repo, name, number)
        if not path.is_dir():
            raise RepositoryError(f"{path}: no such model version")
        return ModelSession(path)
    except ValueError as exc:  # RepositoryError, unloadable model
        _fail(str(exc))


def _latest_in(path: Path) -> int | None:
    """The latest complete version in a model folder; None when the folder is no model."""
    from nnspec.runtime.repository import RepositoryError, latest_version

    try:
        return latest_version(path.parent, path.name)
    except RepositoryError:  # not a valid model name
        return None


def _csv_instances(file: Path, session) -> list:
    with file.open(newline="", encoding="utf-8") as handle:
        if session.features:
            rows = list(csv.DictReader(handle))
            instances = []
            for i, row in enumerate(rows):
                instance = {}
                for feature in session.features:
                    name = feature["name"]
                    if name not in row:
                        _fail(f"{file}: no column {name!r} (model features: {[f['name'] for f in session.features]})")
                    value = row[name]
                    if value is None:  # csv.DictReader's filler for a row shorter than the header
                        _fail(f"{file}:{i + 2}: column {name!r}: missing (the row has fewer fields than the header)")
                    if value in MISSING_CELLS:  # an empty cell (or NA) is a missing value, as training read it
                        value = None
                    elif feature.get("type") != "categorical":
                        try:
                            value = float(value)
                        except ValueError:
                            _fail(f"{file}:{i + 2}: column {name!r}: expected a number, got {value!r}")
                    instance[name] = value
                instances.append(instance)
            return instances
        rows = [row for row in csv.reader(handle) if row]
    try:
        return [[float(v) for v in row] for row in rows]
    except ValueError:
        try:  # a header row
            return [[float(v) for v in row] for row in rows[1:]]
        except ValueError as exc:
            _fail(f"{file}: expected numeric rows ({exc})")


def _read_inputs(files: list[Path], session):
    import numpy as np

    from nnspec.preprocessing import InputError

    batches, names = [], []
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    try:
        if images:
            batches.append(session.encode_images([f.read_bytes() for f in images]))
            names += [f.name for f in images]
        for file in files:
            suffix = file.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                continue
            if suffix == ".npy":
                x = np.load(file, allow_pickle=False)
                x = x[None] if x.shape == session.input_shape else x
                batches.append(session.check_batch(x, str(file)))
            elif suffix == ".json":
                payload = json.loads(file.read_text(encoding="utf-8"))
                instances = payload.get("instances") if isinstance(payload, dict) else payload
                batches.append(session.encode_instances(instances, f"{file}:instances"))
            elif suffix == ".csv":
                batches.append(session.encode_instances(_csv_instances(file, session), str(file)))
            else:
                _fail(f"{file}: unsupported input (use .csv, .npy, .json or an image)")
            names += [f"{file.name}[{i}]" for i in range(len(batches[-1]))]
    except InputError as exc:
        _fail(str(exc))
    except (OSError, ValueError) as exc:  # unreadable file, bad JSON, bad .npy
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return np.concatenate(batches), names


def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME/VERSION in --repo, a model folder (its latest version) or a version folder")],
    inputs: Annotated[list[Path], typer.Argument(help=".csv (named feature columns), .npy, .json or images")],
    repo: Annotated[Path, typer.Option(help="model repository")] = Path("models"),
    as_json: Annotated[bool, typer.Option("--json", help='print {"predictions": [...]}')] = False,
) -> None:
    """Predict with an exported model, without a server (and without torch)."""
    session = _open_session(model, repo)
    x, names = _read_inputs(inputs, session)
    predictions = session.format_predictions(session.run_unchecked(x))  # _read_inputs checked every batch
    if as_json:
        typer.echo(json.dumps({"predictions": predictions}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=session.name + (f" v{session.version}" if session.version else ""))
    table.add_column("input")
    if session.is_classifier:
        table.add_column("label")
        table.add_column("probability", justify="right")
        for name, p in zip(names, predictions):
            table.add_row(name, p["label"], f"{p['probabilities'][p['label']]:.4f}")
    else:
        targets = list(predictions[0]["values"])
        for target in targets:
            table.add_column(target, justify="right")
        for name, p in zip(names, predictions):
            table.add_row(name, *(f"{p['values'][t]:.6g}" for t in targets))
    Console(file=sys.stdout).print(table)



def models(
    repo: Annotated[Path, typer.Option(help="model repository")] = Path("models"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the repository's models: versions, task and the latest version's test metrics."""
    from nnspec.runtime.repository import RepositoryError, list_models, read_manifest, version_dir

    if not repo.is_dir():
        _fail(f"{repo}: no such model repository")
    rows = []
    for name, versions in list_models(repo).items():
        try:
            manifest = read_manifest(version_dir(repo, name, versions[-1]))
        except RepositoryError as exc:
            rows.append({"name": name, "versions": versions, "task": None, "test": {}, "error": str(exc)})
            continue
        rows.append({"name": name, "versions": versions, "task": manifest.get("task"),
                     "test": (manifest.get("metrics") or {}).get("test") or {}})
    if as_json:
        typer.echo(json.dumps({"models": rows}))
        return
    if not rows:
        typer.echo(f"no models in {repo}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(repo))
    for column in ("model", "versions", "task", "test metrics"):
        table.add_column(column)
    for row in rows:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row["test"].items()) or row.get("error", "")
        table.add_row(row["name"], ", ".join(map(str, row["versions"])), row["task"] or "?", metrics)
    Console(file=sys.stdout).print(table)
