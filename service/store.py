"""The models being served: load, hot-swap and unload versions while requests are in flight.

A request leases a loaded version for its whole life. A load builds the new sessions first
and then swaps them in under a lock; a version that is no longer served stops its worker only
when its last lease ends, so requests in flight during a switch all succeed.

Loads and unloads of one model run one at a time (a per-model control lock), so a load never
installs a version that an unload retired meanwhile: a retired version is never handed out again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from nnspec.runtime.repository import (MANIFEST_FILE, MODEL_FILE, RepositoryError, check_name, check_version,
                                       list_models, list_versions, version_dir)
from nnspec.runtime.session import ModelSession

from .batching import Batcher, InlineBatcher, pick_batcher
from .errors import ApiError
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("nnspec.serve")


def _fingerprint(folder) -> tuple:
    # Versions are immutable unless overwritten, and an overwrite is a new folder (new inode).
    stats = [os.stat(folder / name) for name in (MODEL_FILE, MANIFEST_FILE)]
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


@dataclass(eq=False)
class LoadedModel:
    """One served model version: its session, its batcher and its leases."""

    session: ModelSession
    batcher: Batcher | InlineBatcher
    fingerprint: tuple | None  # of the folder it was loaded from (None: could not be read then)
    leases: int = 0
    retired: bool = False


@dataclass(frozen=True)
class VersionFailure:
    """Why a version did not load, and the folder it failed from (polls retry only once that changes)."""

    reason: str
    fingerprint: tuple | None


class LoadError(ValueError):
    """Versions of a model failed to load; the message names each with its reason (never a server path)."""


@dataclass(eq=False)
class _ControlLock:
    """Serializes the loads and unloads of one model; dropped when nobody holds or waits for it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


@dataclass(eq=False)
class ModelLease:
    """A request's hold on one model version; `infer` goes through the version's batcher."""

    store: "ModelStore"
    model: LoadedModel
    submitted: bool = field(default=False)

    @property
    def session(self) -> ModelSession:
        """The version's session (manifest, encoders, formatting)."""
        return self.model.session

    @property
    def version(self) -> int:
        """The version number (the folder's name)."""
        return self.model.session.version

    async def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run a checked batch through the batcher; returns only this request's rows."""
        self.submitted = True
        return await self.model.batcher.infer(x, announced=True)

    def release(self) -> None:
        """End the lease (the dependency does this when the request ends)."""
        if not self.submitted:
            self.model.batcher.withdraw()
        self.store._release(self.model)

    def __enter__(self) -> "ModelLease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class ModelStore:
    """Every loaded model version of one repository."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self._lock = threading.Lock()  # guards _models, _failed, _control and the leases
        self._control: dict[str, _ControlLock] = {}  # sessions are built outside _lock, under these
        self._closed = False
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._failed: dict[str, dict[int, VersionFailure]] = {}  # versions that failed their last load

    # --- requests -------------------------------------------------------------------------

    def _pick(self, name: str, version: int | str | None) -> tuple[dict[int, LoadedModel], LoadedModel]:
        """The loaded versions of `name` and the latest (or the given) one, or a 400/404 ApiError. Hold _lock."""
        try:
            check_name(name)
            number = None if version is None else check_version(version)
        except RepositoryError as exc:
            raise ApiError(400, str(exc)) from None
        versions = self._models.get(name)
        if not versions:
            raise ApiError(404, f"model {name!r} is not loaded")
        model = versions.get(number if number is not None else max(versions))
        if model is None:
            raise ApiError(404, f"version {number} of model {name!r} is not loaded (loaded: {sorted(versions)})")
        return versions, model

    def acquire(self, name: str, version: int | str | None = None) -> ModelLease:
        """Lease the latest (or the given) loaded version, or raise a 400/404 ApiError."""
        with self._lock:
            _, model = self._pick(name, version)
            model.leases += 1
        model.batcher.announce()
        return ModelLease(self, model)

    def resolve(self, name: str, version: int | str | None = None) -> tuple[dict[int, ModelSession], ModelSession]:
        """The loaded sessions of `name` by version and the latest (or the given) one, or a 400/404 ApiError."""
        with self._lock:
            versions, model = self._pick(name, version)
            return {v: m.session for v, m in sorted(versions.items())}, model.session

    def _release(self, model: LoadedModel) -> None:
        with self._lock:
            model.leases -= 1
            stop = model.retired and model.leases == 0
        if stop:
            model.batcher.close()

    def _retire(self, models: list[LoadedModel]) -> None:
        # called with _lock held; once retired a version is out of _models for good
        for model in models:
            model.retired = True
            if model.leases == 0:
                model.batcher.close()

    # --- state ----------------------------------------------------------------------------

    def loaded(self) -> dict[str, list[int]]:
        """Loaded model names -> loaded versions, ascending."""
        with self._lock:
            return {name: sorted(v) for name, v in sorted(self._models.items())}

    def failures(self) -> dict[str, dict[int, str]]:
        """Models with versions that failed their last load -> version -> why."""
        with self._lock:
            return {name: {v: f.reason for v, f in versions.items()} for name, versions in self._failed.items()}

    def unready(self) -> list[str]:
        """Models that failed to load and serve no version (a ready server has none)."""
        with self._lock:
            return sorted(name for name in self._failed if not self._models.get(name))

    def index(self) -> list[dict]:
        """Triton's repository index: an entry per loaded or failed version; one per model that has neither."""
        in_repo = list_models(self.settings.repository)
        with self._lock:
            loaded = {name: set(versions) for name, versions in self._models.items()}
        failed = self.failures()
        entries = []
        for name in sorted(set(in_repo) | set(loaded) | set(failed)):
            served, reasons = loaded.get(name, set()), failed.get(name, {})
            for version in sorted(served | set(reasons)):
                # A served version whose changed folder failed to reload stays READY, with the failure as reason.
                entries.append(_entry(name, version, "READY" if version in served else "UNAVAILABLE",
                                      reasons.get(version, "")))
            if not served and not reasons:
                entries.append(_entry(name, in_repo[name][-1], "UNAVAILABLE", "unloaded"))
        return entries

    # --- loading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _controlling(self, name: str) -> Iterator[None]:
        """Hold `name`'s control lock: its loads and unloads run one at a time."""
        with self._lock:
            control = self._control.setdefault(name, _ControlLock())
            control.users += 1
        try:
            with control.lock:
                yield
        finally:
            with self._lock:
                control.users -= 1
                if not control.users:  # one lock per model being controlled, not per name ever asked for
                    del self._control[name]

    def load(self, name: str) -> list[int]:
        """(Re)load `name` (blocking): serve its newest `max_versions` versions that load; returns them.

        Raises LoadError naming the versions that failed (the ones that loaded serve all the same),
        or a 404 ApiError when the repository holds no complete version of `name`.
        """
        versions, failed = self._reload(name, retry=True)
        if failed:
            raise LoadError("; ".join(f"version {v}: {reason}" for v, reason in sorted(failed.items(), reverse=True)))
        return versions

    def _reload(self, name: str, retry: bool) -> tuple[list[int], dict[int, str]]:
        """Try `name`'s versions newest first until `max_versions` serve; returns them and the new failures.

        Each version loads or fails on its own. `retry=False` (polls) does not retry a version that
        failed before from the same folder.
        """
        check_name(name)
        with self._controlling(name):
            available = list_versions(self.settings.repository, name)
            if not available:
                with self._lock:
                    self._failed.pop(name, None)  # its failures went with its folder
                raise ApiError(404, f"model {name!r} has no complete version in the repository")
            with self._lock:
                current = dict(self._models.get(name, {}))
                known = dict(self._failed.get(name, {}))
            fresh: dict[int, LoadedModel] = {}
            failures: dict[int, VersionFailure] = {}
            for version in reversed(available):
                if len(fresh) == self.settings.max_versions:
                    break
                model, failure = self._version(name, version, current.get(version), known.get(version), retry)
                if model is not None:
                    fresh[version] = model
                if failure is not None:
                    failures[version] = failure
            self._install(name, fresh, failures, current)
        new = {v: f.reason for v, f in failures.items() if f is not known.get(v)}
        for version, reason in sorted(new.items()):
            log.error("cannot load %s version %d: %s", name, version, reason)
        return sorted(fresh), new

    def _version(self, name: str, version: int, old: LoadedModel | None, known: VersionFailure | None,
                 retry: bool) -> tuple[LoadedModel | None, VersionFailure | None]:
        """One version: the model to serve (or None) and why it failed (or None)."""
        folder = version_dir(self.settings.repository, name, version)
        fingerprint = _safe_fingerprint(folder)
        if old is not None and old.fingerprint == fingerprint:
            return old, None  # unchanged: keep serving it
        if not retry and known is not None and known.fingerprint == fingerprint:
            return old, known  # the same folder would fail the same way: wait for it to change
        try:
            return self._open(folder, name, version, fingerprint), None
        except (OSError, ValueError) as exc:
            # A served version whose folder changed keeps its working session until a reload succeeds.
            return old, VersionFailure(_reason(exc, folder, name, version), fingerprint)

    def _install(self, name: str, fresh: dict[int, LoadedModel], failures: dict[int, VersionFailure],
                 current: dict[int, LoadedModel]) -> None:
        """Serve `fresh` instead of `current` and record `failures`; hold `name`'s control lock."""
        with self._lock:
            if self._closed:  # shutting down: nothing new is served
                self._retire([m for v, m in fresh.items() if m is not current.get(v)])
                return
            _put(self._models, name, fresh)
            _put(self._failed, name, failures)
            self._retire([m for v, m in current.items() if fresh.get(v) is not m])
        if fresh != current:
            self.metrics.models_loaded.labels(name).set(len(fresh))
            log.info("serving %s versions %s", name, sorted(fresh))

    def _open(self, folder: Path, name: str, version: int, fingerprint: tuple | None) -> LoadedModel:
        session = ModelSession(folder, intra_op_threads=self.settings.threads_per_run(), spin=False)
        if session.name != name:
            raise ValueError(f"manifest name {session.name!r} != folder name {name!r}")
        batcher = pick_batcher(session.run_unchecked, session.time_run, labels=(name, str(version)),
                               metrics=self.metrics, max_batch_size=session.max_batch_size,
                               max_queue_delay_ms=session.max_queue_delay_ms,
                               max_queue=self.settings.max_queue, batching=self.settings.batching)
        return LoadedModel(session, batcher, fingerprint)

    def unload(self, name: str) -> bool:
        """Stop serving `name` and forget its failures; in-flight requests finish first. False if it had neither."""
        with self._controlling(name), self._lock:
            models = self._models.pop(name, None)
            failed = self._failed.pop(name, None)
            if models:
                self._retire(list(models.values()))
        if models:
            self.metrics.models_loaded.labels(name).set(0)
        return bool(models or failed)

    def load_all(self) -> None:
        """Load every model of the repository; failures are logged and kept, not raised."""
        for name in list_models(self.settings.repository):
            self._try_reload(name, retry=True)

    def sync(self) -> None:
        """Poll: load new or changed versions; unload models gone from the repository and forget their failures."""
        with self._lock:
            known = set(self._models) | set(self._failed)
        in_repo = list_models(self.settings.repository)
        for name in in_repo:
            self._try_reload(name, retry=False)
        for name in known - set(in_repo):
            self.unload(name)

    def _try_reload(self, name: str, retry: bool) -> None:
        try:
            self._reload(name, retry)  # logs the versions that fail
        except (ApiError, OSError) as exc:  # the folder went away meanwhile, or cannot be read
            log.error("cannot load %s: %s", name, getattr(exc, "message", exc))

    def close(self) -> None:
        """Unload everything and wait for the workers."""
        with self._lock:
            self._closed = True
            models = [m for versions in self._models.values() for m in versions.values()]
            self._models.clear()
            self._retire(models)
        for model in models:
            model.batcher.join(timeout=5)


def _safe_fingerprint(folder) -> tuple | None:
    try:
        return _fingerprint(folder)
    except OSError:
        return None


def _reason(exc: Exception, folder: Path, name: str, version: int) -> str:
    """`exc` in at most 300 characters, the version folder written `<name>/<version>`: never a server path."""
    text = str(exc)
    for path in sorted({str(folder), str(folder.absolute()), str(folder.resolve())}, key=len, reverse=True):
        text = text.replace(path, f"{name}/{version}")
    return text[:300]


def _entry(name: str, version: int, state: str, reason: str) -> dict:
    return {"name": name, "version": str(version), "state": state, "reason": reason}


def _put(table: dict, key: str, value: dict) -> None:
    # an empty value leaves no key behind: a model with nothing loaded or failed is simply absent
    if value:
        table[key] = value
    else:
        table.pop(key, None)
