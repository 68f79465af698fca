"""The models being served, by name and version, and their lifecycle: load, reload, unload.

Each served version has its own batcher (queue and limits); all of them share one inference
worker (service.worker), which takes their backend calls in turn. Without a model repository
the registry serves the one configured checkpoint, as version 1 of a model named after it.

A (re)load builds and warms the new instances beside the ones serving (the warm-up runs off the
worker, so no request waits for it), then switches: requests that chose the old instance finish
on it while it drains, later ones go to the new one. A load that fails leaves the old instance
serving and says why. Unloading drains a model's instances and frees their memory.

States are Triton's: READY, LOADING, UNLOADING, UNAVAILABLE (with a reason).
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from starlette.concurrency import run_in_threadpool

from .backend import Backend
from .batcher import Batcher
from .errors import ServiceError
from .repository import ModelOnDisk, scan
from .worker import InferenceWorker

log = logging.getLogger("dcnserve")

Loader = Callable[[Optional[str]], Backend]  # checkpoint stem (None: the shipped one) -> backend


@dataclass
class ModelVersion:
    name: str
    version: int
    backend: Backend
    batcher: Batcher
    loaded_at: float = field(default_factory=time.time)

    async def close(self, timeout: float) -> None:
        """Finishes the accepted requests, then frees the runtime."""
        await self.batcher.stop(timeout=timeout)
        close = getattr(self.backend, "close", None)
        if close is not None:
            await run_in_threadpool(close)


@dataclass
class ServedModel:
    name: str
    versions: Dict[int, ModelVersion] = field(default_factory=dict)  # serving now
    state: str = "UNAVAILABLE"
    reason: str = "not loaded"
    unloaded: bool = False  # by request: first use does not load it again

    @property
    def latest(self) -> Optional[ModelVersion]:
        return self.versions[max(self.versions)] if self.versions else None


class ModelRegistry:
    def __init__(self, settings, loader: Loader, metrics, worker: Optional[InferenceWorker] = None):
        self.settings, self.loader, self.metrics = settings, loader, metrics
        self.worker = worker or InferenceWorker()
        self.models: Dict[str, ServedModel] = {}
        self.default_name: Optional[str] = None
        self._single: Optional[ModelOnDisk] = None  # without a repository: the one checkpoint
        self._changing = asyncio.Lock()  # one load or unload at a time (memory, CPU)

    # -- what is on disk and what is served -------------------------------------------------
    def on_disk(self) -> Dict[str, ModelOnDisk]:
        if self.settings.model_repository:
            return scan(self.settings.model_repository)
        return {self._single.name: self._single} if self._single else {}

    def loaded_names(self) -> List[str]:
        return sorted(name for name, model in self.models.items() if model.versions)

    def not_found(self, name: Optional[str], version: Optional[int] = None) -> ServiceError:
        what = f"model {name!r}" + (f" version {version}" if version is not None else "")
        loaded = ", ".join(self.loaded_names()) or "none"
        return ServiceError(404, f"unknown or unloaded {what}; loaded models: {loaded}")

    def resolve(self, name: Optional[str] = None, version: Optional[int] = None) -> ModelVersion:
        """The serving instance of `name` (None: the default model) at `version` (None: its
        newest); 404 naming the loaded models."""
        name = name or self.default_name
        model = self.models.get(name)
        if model is None or not model.versions:
            raise self.not_found(name)
        if version is None:
            return model.latest
        if version not in model.versions:
            raise self.not_found(name, version)
        return model.versions[version]

    def serving(self) -> Optional[ModelVersion]:
        """The default model's newest instance, else the first served model's (readiness)."""
        loaded = self.loaded_names()
        names = ([self.default_name] if self.default_name in loaded else []) + loaded
        return self.resolve(names[0]) if names else None

    async def ensure(self, name: Optional[str]) -> None:
        """With `model_loading=first_use`, loads a model on disk that has not been loaded."""
        name = name or self.default_name
        model = self.models.get(name)
        if (self.settings.model_loading != "first_use" or (model and model.versions)
                or (model and (model.unloaded or model.state == "UNAVAILABLE"
                               and model.reason != "not loaded"))):
            return
        if name in self.on_disk():
            await self.load(name)

    def index(self) -> List[dict]:
        """Every model on disk or served: name, version, state, reason (repository index)."""
        rows = []
        disk = self.on_disk()
        for name in sorted(set(disk) | set(self.models)):
            model = self.models.get(name) or ServedModel(name)
            versions = sorted(set(disk[name].versions if name in disk else ()) |
                              set(model.versions))
            for version in versions or [None]:
                if version in model.versions:
                    state, reason = "READY", ""
                elif model.versions:  # another version of it serves
                    state, reason = "UNAVAILABLE", model.reason or (
                        f"not among the newest {self.settings.model_versions} (model_versions)")
                else:
                    state, reason = model.state, model.reason
                rows.append({"name": name, "version": "" if version is None else str(version),
                             "state": state, "reason": reason})
        return rows

    def busy_for(self) -> float:
        return self.worker.busy_for()

    def queue_depths(self):
        for model in self.models.values():
            for mv in model.versions.values():
                yield mv.name, mv.version, mv.batcher.depth

    # -- lifecycle ----------------------------------------------------------------------------
    async def _build(self, name: str, version: int, checkpoint: Optional[str],
                     backend: Optional[Backend] = None) -> ModelVersion:
        if backend is None:
            backend = await run_in_threadpool(self.loader, checkpoint)
        await run_in_threadpool(backend.warmup)
        s = self.settings
        observe = self.metrics.batch_observer(name, version)
        batcher = Batcher(backend, s.max_batch_size, s.max_delay_ms / 1e3, s.queue_size,
                          observe, worker=self.worker)
        batcher.start()
        return ModelVersion(name, version, backend, batcher)

    async def start(self) -> None:
        """Start-up: the configured checkpoint, or the repository's models (all of them, or only
        the default one with first_use). Raises when the default model fails to load."""
        if not self.settings.model_repository:
            backend = await run_in_threadpool(self.loader, self.settings.checkpoint)
            self._single = ModelOnDisk(backend.model_name, {1: self.settings.checkpoint})
            self.default_name = backend.model_name
            mv = await self._build(backend.model_name, 1, self.settings.checkpoint, backend)
            self._serve(self.models.setdefault(mv.name, ServedModel(mv.name)), {1: mv})
            return
        disk = self.on_disk()
        if not disk:
            raise ValueError(f"model repository {self.settings.model_repository!r} is empty")
        self.default_name = self.settings.default_model or min(disk)
        if self.default_name not in disk:
            raise ValueError(f"default model {self.default_name!r} is not in the repository "
                             f"(models: {', '.join(sorted(disk))})")
        first_use = self.settings.model_loading == "first_use"
        for name in sorted(disk, key=lambda n: n != self.default_name):  # default first
            self.models.setdefault(name, ServedModel(name))
            if first_use and name != self.default_name:
                continue
            try:
                await self.load(name)
            except ServiceError as e:
                if name == self.default_name:
                    raise RuntimeError(e.detail) from None
                log.error("%s", e.detail)

    def _serve(self, model: ServedModel, versions: Dict[int, ModelVersion]) -> None:
        model.versions, model.state, model.reason, model.unloaded = versions, "READY", "", False
        for version in versions:
            self.metrics.model_ready.labels(model.name, str(version)).set(1)

    async def _retire(self, versions: List[ModelVersion], keep: Dict[int, ModelVersion]) -> None:
        for mv in versions:
            await mv.close(self.settings.request_timeout_s)
            if mv.version not in keep:
                self.metrics.model_ready.remove(mv.name, str(mv.version))

    async def load(self, name: str) -> None:
        """Loads, or reloads, the newest `model_versions` versions of `name` on disk and
        switches to them once they are warm. 404 for a model not on disk; 400 (the old
        versions still serving) when a version fails to load."""
        async with self._changing:
            disk = self.on_disk().get(name)
            if disk is None:
                raise ServiceError(404, f"no model {name!r} in the repository (models: "
                                        f"{', '.join(sorted(self.on_disk())) or 'none'})")
            model = self.models.setdefault(name, ServedModel(name))
            wanted = disk.newest(self.settings.model_versions)
            if not wanted:
                problems = "; ".join(disk.problems.values()) or "no version folders"
                raise self._failed(model, f"model {name!r} has no loadable version: {problems}")
            if not model.versions:
                model.state, model.reason = "LOADING", ""
            started = time.perf_counter()
            built: Dict[int, ModelVersion] = {}
            try:
                for version in wanted:
                    built[version] = await self._build(name, version, disk.versions[version])
            except Exception as e:
                log.exception("loading %s version %s failed", name, version)
                await self._retire(list(built.values()), model.versions)
                self.metrics.model_loads.labels(name, "failed").inc()
                raise self._failed(model, f"failed to load model {name!r} version {version}: "
                                          f"{type(e).__name__}: {e}") from None
            old = list(model.versions.values())
            self._serve(model, built)
            self.metrics.model_loads.labels(name, "ok").inc()
            log.info("serving %s versions %s (%s on %s, loaded in %.1f s)", name, wanted,
                     built[wanted[0]].backend.name, built[wanted[0]].backend.device,
                     time.perf_counter() - started)
            await self._retire(old, built)

    def _failed(self, model: ServedModel, reason: str) -> ServiceError:
        if model.versions:  # the old versions go on serving
            model.reason = reason
        else:
            model.state, model.reason = "UNAVAILABLE", reason
        return ServiceError(400, reason)

    async def unload(self, name: str) -> None:
        """Stops serving `name` (new requests get 404 at once), lets its accepted requests
        finish, and frees its memory."""
        async with self._changing:
            model = self.models.get(name)
            if model is None:
                if name not in self.on_disk():
                    raise self.not_found(name)
                model = self.models[name] = ServedModel(name)
            old = list(model.versions.values())
            model.versions, model.state, model.reason = {}, "UNLOADING", ""
            await self._retire(old, {})
            model.state, model.reason, model.unloaded = "UNAVAILABLE", "unloaded", True
            log.info("unloaded %s", name)

    async def stop(self, timeout: float) -> None:
        """Shutdown: every served version finishes its accepted requests."""
        versions = [mv for model in self.models.values() for mv in model.versions.values()]
        await asyncio.gather(*(mv.batcher.stop(timeout=timeout) for mv in versions))
        self.worker.shutdown(wait=self.worker.busy_for() == 0)  # a hung call is abandoned
