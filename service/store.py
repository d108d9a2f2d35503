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
from typing import Iterator

import numpy as np

from nnspec.runtime.repository import (MANIFEST_FILE, MODEL_FILE, RepositoryError, check_name,
                                       check_version, list_models, list_versions, version_dir)
from nnspec.runtime.session import ModelSession

from .batching import Batcher
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
    batcher: Batcher
    fingerprint: tuple
    leases: int = 0
    retired: bool = False


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


class ModelStore:
    """Every loaded model version of one repository."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self._lock = threading.Lock()  # guards _models, _failed, _control and the leases
        self._control: dict[str, _ControlLock] = {}  # sessions are built outside _lock, under these
        self._closed = False
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._failed: dict[str, str] = {}
        self._failed_folders: dict[str, list] = {}  # what a failed load saw: polls retry only once it changes

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

    def failures(self) -> dict[str, str]:
        """Models whose last load failed -> why."""
        with self._lock:
            return dict(self._failed)

    def index(self) -> list[dict]:
        """Triton's repository index: every model in the repository or loaded, with its state."""
        in_repo = list_models(self.settings.repository)
        loaded, failed = self.loaded(), self.failures()
        entries = []
        for name in sorted(set(in_repo) | set(loaded)):
            if name in loaded:
                entries.append({"name": name, "version": str(max(loaded[name])), "state": "READY", "reason": ""})
            else:
                entries.append({"name": name, "version": str(in_repo[name][-1]), "state": "UNAVAILABLE",
                                "reason": failed.get(name, "unloaded")})
        return entries

    # --- loading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _controlling(self, name: str) -> Iterator[None]:
        """Hold `name`'s control lock: its loads and unloads run one at a time, in arrival order of the lock."""
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
        """(Re)load the newest `max_versions` versions of `name` from the repository (blocking)."""
        check_name(name)
        with self._controlling(name):
            wanted = list_versions(self.settings.repository, name)[-self.settings.max_versions:]
            if not wanted:
                raise ApiError(404, f"model {name!r} has no complete version in the repository")
            current = self.loaded_versions(name)
            fresh: dict[int, LoadedModel] = {}
            try:
                for version in wanted:
                    folder = version_dir(self.settings.repository, name, version)
                    fingerprint = _fingerprint(folder)
                    old = current.get(version)
                    fresh[version] = old if old and old.fingerprint == fingerprint else \
                        self._open(folder, name, version, fingerprint)
            except (OSError, ValueError) as exc:
                for version, model in fresh.items():
                    if model is not current.get(version):
                        model.batcher.close()
                with self._lock:
                    self._failed[name] = str(exc)[:300]
                    self._failed_folders[name] = self._folders(name, wanted)
                raise
            with self._lock:
                if self._closed:  # the server is shutting down: nothing new is served
                    self._retire([m for v, m in fresh.items() if m is not current.get(v)])
                    return []
                gone = [m for v, m in self._models.get(name, {}).items() if fresh.get(v) is not m]
                self._models[name] = fresh
                self._failed.pop(name, None)
                self._failed_folders.pop(name, None)
                self._retire(gone)
            self.metrics.models_loaded.labels(name).set(len(fresh))
            log.info("serving %s versions %s", name, sorted(fresh))
            return sorted(fresh)

    def _folders(self, name: str, versions: list[int]) -> list:
        return [(v, _safe_fingerprint(version_dir(self.settings.repository, name, v))) for v in versions]

    def loaded_versions(self, name: str) -> dict[int, LoadedModel]:
        """The loaded versions of `name` (a snapshot)."""
        with self._lock:
            return dict(self._models.get(name, {}))

    def _open(self, folder, name: str, version: int, fingerprint: tuple) -> LoadedModel:
        session = ModelSession(folder, intra_op_threads=self.settings.threads_per_run(), spin=False)
        if session.name != name:
            raise ValueError(f"{folder}: manifest name {session.name!r} != folder name {name!r}")
        batcher = Batcher(session.run_unchecked, labels=(name, str(version)), metrics=self.metrics,
                          max_batch_size=session.max_batch_size,
                          max_queue_delay_ms=session.max_queue_delay_ms,
                          max_queue=self.settings.max_queue, batching=self.settings.batching)
        return LoadedModel(session, batcher, fingerprint)

    def unload(self, name: str) -> bool:
        """Stop serving `name`; in-flight requests finish first. False if it was not loaded."""
        with self._controlling(name), self._lock:
            models = self._models.pop(name, None)
            if models:
                self._retire(list(models.values()))
        self.metrics.models_loaded.labels(name).set(0)
        return bool(models)

    def load_all(self) -> None:
        """Load every model of the repository; failures are logged and kept, not raised."""
        for name in list_models(self.settings.repository):
            try:
                self.load(name)
            except (OSError, ValueError) as exc:
                log.error("cannot load %s: %s", name, exc)

    def sync(self) -> None:
        """Poll: load new or changed models, unload those gone from the repository."""
        in_repo = list_models(self.settings.repository)
        loaded = self.loaded()
        for name, versions in in_repo.items():
            keep = versions[-self.settings.max_versions:]
            with self._lock:
                failed_on = self._failed_folders.get(name)
            if failed_on is not None and failed_on == self._folders(name, keep):
                continue  # the load that failed would fail again: wait for the folders to change
            fingerprints_changed = any(
                m.fingerprint != _safe_fingerprint(m.session.dir) for m in self.loaded_versions(name).values())
            if loaded.get(name) != keep or fingerprints_changed:
                try:
                    self.load(name)
                except (OSError, ValueError) as exc:
                    log.error("cannot load %s: %s", name, exc)
        for name in set(loaded) - set(in_repo):
            self.unload(name)

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
