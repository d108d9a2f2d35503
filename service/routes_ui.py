"""The model pages: `/` lists the repository, `/models/{name}` shows one model and lets a person try it.

The pages are static files (one HTML shell, a stylesheet and a vanilla script, no build step, nothing
from a CDN), open like `/docs`: they hold no model data. The script reads everything through the
routes of `api`, a `ModelRouter`, so it needs the API key exactly where the inference routes do
(asked once on the page and sent as `Authorization: Bearer`), and it calls `:predict` with JSON and
`:classify` with multipart, as any client must. Nothing here shows a server path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from markdown_it import MarkdownIt
from starlette.responses import FileResponse, Response

from nnspec.runtime.repository import PLOTS, RepositoryError, list_versions, read_manifest, version_dir
from nnspec.runtime.session import ModelSession

from .deps import ServingState, State
from .errors import ApiError
from .payloads import json_response
from .routing import ModelRouter

UI_FOLDER = Path(__file__).parent / "ui"
PAGE = UI_FOLDER / "page.html"  # the shell of both pages; the script renders the one its path names
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
MODEL_CARD = "README.md"
# Only this server's own files run, load and are fetched; no page may frame these (clickjacking).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_markdown = MarkdownIt("js-default")  # CommonMark + tables, raw HTML escaped, javascript: links refused

pages = APIRouter(include_in_schema=False)
api = ModelRouter(prefix="/ui/api", include_in_schema=False)
ROUTERS = (pages, api)


@pages.get("/")
async def repository_page() -> FileResponse:
    """The repository page."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@pages.get("/models/{name}")
async def model_page(name: str) -> FileResponse:
    """A model's page (the script asks the API for the model: a missing one is said on the page)."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@pages.get("/ui/static/{file}")
async def static_file(file: str) -> FileResponse:
    """The pages' script and stylesheet; nothing else in the package is served."""
    if file not in STATIC:
        raise ApiError(404, f"no static file {file!r}")
    return FileResponse(UI_FOLDER / file, media_type=STATIC[file], headers=PAGE_HEADERS)


def input_kind(manifest: dict) -> str:
    """What the model takes, in a few words: `table of 4 features`, `16x16 grayscale image`, `array [40]`."""
    if manifest.get("features"):
        return f"table of {len(manifest['features'])} features"
    if manifest.get("image"):
        height, width = manifest["image"]["size"]
        return f"{height}x{width} {manifest['image'].get('color', 'grayscale')} image"
    return f"array {manifest['input']['shape']}"


def headline_metric(manifest: dict) -> dict | None:
    """The first test metric other than the loss (validation when there is no test split), as `{split, name, value}`."""
    metrics = manifest.get("metrics") or {}
    for split in ("test", "validation"):
        values = metrics.get(split) or {}
        for name in [n for n in values if n != "loss"] or list(values):
            return {"split": split, "name": name, "value": values[name]}
    return None


def _summary(manifest: dict) -> dict:
    return {"task": manifest.get("task"), "input_kind": input_kind(manifest), "metric": headline_metric(manifest),
            "parameters": manifest.get("parameters")}


def _unserved_summary(state: ServingState, name: str, versions: list[int]) -> dict:
    # A model that serves no version is described by its newest manifest, as far as that one reads.
    try:
        return _summary(read_manifest(version_dir(state.settings.repository, name, versions[-1]))) if versions else {}
    except (RepositoryError, LookupError, TypeError, ValueError):  # the index's reason says what failed (no path)
        return {}


def repository_rows(state: ServingState) -> list[dict]:
    """Every model in the repository or loaded: versions, status (ready, loading, not loaded, failed: why)."""
    entries: dict[str, list[dict]] = {}
    for entry in state.store.index():
        entries.setdefault(entry["name"], []).append(entry)
    rows = []
    for name, items in entries.items():
        served = [int(e["version"]) for e in items if e["state"] == "READY"]
        failures = [f"version {e['version']}: {e['reason']}" for e in items if e["reason"] and e["reason"] != "unloaded"]
        versions = sorted(set(list_versions(state.settings.repository, name)) | set(served))
        if served:
            status, summary = "ready", _summary(state.store.resolve(name)[1].manifest)
        else:
            status = "failed" if failures else "loading" if state.settings.model_control == "poll" else "not loaded"
            summary = _unserved_summary(state, name, versions)
        rows.append({"name": name, "status": status, "reason": "; ".join(failures), "versions": versions,
                     "served": served, **summary})
    return rows


def model_details(sessions: dict[int, ModelSession], session: ModelSession) -> dict:
    """What the model page shows of the latest loaded version: contract, metrics, rendered card, plots, example."""
    manifest = session.manifest
    card = session.dir / MODEL_CARD
    return {
        **session.metadata(), **_summary(manifest), "versions": list(sessions),
        "max_batch_size": session.max_batch_size, "created": manifest.get("created"),
        "example": manifest.get("example"),
        "card": _markdown.render(card.read_text(encoding="utf-8")) if card.is_file() else None,
        "plots": [plot for plot in PLOTS if (session.dir / plot).is_file()],
    }


@api.get("/models")
def repository(state: State) -> Response:
    """The repository page's rows."""
    return json_response({"models": repository_rows(state)})


@api.get("/models/{name}")
def model(name: str, state: State) -> Response:
    """The model page's data (404 when no version of the model is loaded)."""
    return json_response(model_details(*state.store.resolve(name)))


@api.get("/models/{name}/versions/{version}/plots/{plot}")
def plot(name: str, version: str, plot: str, state: State) -> Response:
    """A training plot the export copied into the version folder."""
    _, session = state.store.resolve(name, version)
    if plot not in PLOTS or not (session.dir / plot).is_file():
        raise ApiError(404, f"version {session.version} of model {name!r} has no plot {plot!r}")
    return Response((session.dir / plot).read_bytes(), media_type="image/png")
