"""The model being served: load at start, verify, follow an MLflow alias and hot-swap it.

Requests read `holder.current` once (an immutable snapshot), so a swap is one reference
assignment: requests in flight finish on the old model, new ones use the new one, none fails.
A load that fails leaves the old model serving and is counted and logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec_recommender.serving.fallback import (
    Fallback,
    build_fallback,
    read_users_csv,
    read_users_db,
)
from movierec_recommender.serving.materialize import AnswerTable, cache_key, shared_table
from movierec_recommender.serving.metrics import ServingMetrics
from movierec_recommender.serving.settings import ServingSettings

log = logging.getLogger(__name__)

Loader = Callable[[str], tuple[Any, str]]


class TableSlot:
    """Where a snapshot's precomputed answers land once built (None until then)."""

    def __init__(self) -> None:
        self.table: AnswerTable | None = None


@dataclass(frozen=True)
class Snapshot:
    """One loaded model and everything derived from it; never mutated after the swap."""

    model: Any
    version: str
    algo: str
    name: str
    fallback: Fallback
    loaded_at: float
    answers: TableSlot = field(default_factory=TableSlot)


def is_registry_uri(source: str) -> bool:
    return source.startswith("models:/")


def follows_alias(source: str) -> bool:
    return is_registry_uri(source) and "@" in source


def model_name(source: str) -> str:
    if is_registry_uri(source):
        return re.split(r"[@/]", source[len("models:/") :], maxsplit=1)[0]
    return Path(source).name or "model"


def verify(model: Any, n: int) -> None:
    """A model must answer: popular items, and a finite ranked list for a known-or-not user."""
    import numpy as np

    popular = list(model.popular(n))
    if not popular:
        raise ValueError("model has no popular items to fall back on")
    ids, scores = model.recommend("__movierec_probe_user__", n=n)
    if len(ids) == 0 or not np.all(np.isfinite(np.asarray(scores, dtype=float))):
        raise ValueError("model gives an empty or non-finite answer to an unknown user")


def load_from_folder(path: str) -> Any:
    from movierec_recommender.models import load_model

    if not Path(path).is_dir():
        raise FileNotFoundError(f"no model folder at {path}")
    return load_model(path)


class ModelHolder:
    """Owns the current snapshot and the background thread that loads and reloads it."""

    def __init__(
        self,
        settings: ServingSettings,
        metrics: ServingMetrics,
        *,
        loader: Loader | None = None,
        alias_version: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.source = settings.model
        self.name = model_name(self.source)
        self._loader = loader or self._default_loader
        self._alias_version = alias_version or self._default_alias_version
        self.current: Snapshot | None = None
        self.last_error: str | None = None
        self._users: Mapping[str, tuple[str, str]] | None = None
        self._users_loaded_at = 0.0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    # -- loading -----------------------------------------------------------------------------

    def _default_loader(self, source: str) -> tuple[Any, str]:
        if is_registry_uri(source):
            from movierec_recommender.registry import download_model

            return download_model(source, self.settings.tracking_uri)
        version = self.settings.model_version or Path(source).name or "local"
        return load_from_folder(source), version

    def _default_alias_version(self) -> str | None:
        from movierec_recommender.registry import get_alias_version

        name, alias = self.source[len("models:/") :].split("@", 1)
        return get_alias_version(name, alias, self.settings.tracking_uri)

    def _users_metadata(self) -> Mapping[str, tuple[str, str]] | None:
        fresh = time.monotonic() - self._users_loaded_at < self.settings.users_refresh_seconds
        if self._users is not None and fresh:
            return self._users
        try:
            if self.settings.users_csv:
                self._users = read_users_csv(self.settings.users_csv)
            elif self.settings.db_url:
                self._users = read_users_db(self.settings.db_url)
        except Exception as exc:  # metadata is optional: fall back to overall popularity
            log.warning("user metadata unavailable, fallback is overall popularity: %s", exc)
        self._users_loaded_at = time.monotonic()
        return self._users

    def load(self, source: str | None = None) -> bool:
        """Load `source` (default: the configured one), verify it and swap it in. True on success."""
        source = source or self.source
        started = time.monotonic()
        try:
            model, version = self._loader(source)
            verify(model, self.settings.n)
            fallback = build_fallback(
                model,
                self._users_metadata(),
                self.settings.n,
                sample_per_segment=self.settings.segment_sample_users,
            )
            if not fallback.popular:
                raise ValueError("model has no popular items to fall back on")
        except Exception as exc:
            self.metrics.reloads.labels("failure").inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            old = self.current.version if self.current else None
            log.error(
                "model load of %s failed (still serving %s): %s", source, old, self.last_error
            )
            return False
        snap = Snapshot(model, str(version), str(model.algo), self.name, fallback, time.time())
        if self.current is None:  # first load: serve now, fill the answer table afterwards
            self.swap(snap)
            self._precompute(snap, source)
        else:  # hot swap: the old model serves until the new one is fully warm
            self._precompute(snap, source)
            self.swap(snap)
        log.info(
            "serving model %s version %s (%s), loaded in %.1fs",
            self.name, version, model.algo, time.monotonic() - started,
        )  # fmt: skip
        return True

    def _cache_key(self, snap: Snapshot, source: str) -> str | None:
        """What identifies the model's content; None when unknown (then nothing is shared)."""
        if is_registry_uri(source):
            # A registry can be recreated with different content under the same name and
            # version (a fresh demo store): the run id and artifact checksum tell them apart.
            try:
                from movierec_recommender.registry.store import client

                mv = client(self.settings.tracking_uri).get_model_version(self.name, snap.version)
                origin = f"{mv.run_id}|{mv.tags.get('artifact_sha256', '')}"
            except Exception as exc:
                log.warning("no registry identity for version %s: not sharing answers: %s",
                            snap.version, exc)  # fmt: skip
                return None
        else:
            meta = Path(source) / "meta.json"
            stamp = meta.stat().st_mtime_ns if meta.exists() else 0
            origin = f"{Path(source).resolve()}|{stamp}"
        return cache_key(origin, snap.version, snap.algo, str(self.settings.n))

    def _precompute(self, snap: Snapshot, source: str) -> None:
        if not self.settings.precompute:
            return
        started = time.monotonic()
        try:
            key = self._cache_key(snap, source)
            table = shared_table(
                snap.model,
                self.settings.n,
                key or "",
                self.settings.answers_cache_dir if key else None,
                stop=self._stop,
            )
        except Exception as exc:  # the table is an optimisation: answer from the model instead
            log.warning("answer table for version %s not built: %s", snap.version, exc)
            return
        snap.answers.table = table
        if table is not None:
            self.metrics.precomputed.set(len(table))
            log.info(
                "answer table for version %s: %d users in %.1fs",
                snap.version, len(table), time.monotonic() - started,
            )  # fmt: skip

    def swap(self, snapshot: Snapshot) -> None:
        old = self.current
        self.current = snapshot
        self.last_error = None
        self.metrics.model_info.labels(snapshot.version, snapshot.algo).set(1)
        if old is not None and (old.version, old.algo) != (snapshot.version, snapshot.algo):
            self.metrics.model_info.labels(old.version, old.algo).set(0)
            log.info("hot swap: model version %s -> %s", old.version, snapshot.version)
        self.metrics.model_ready.set(1)
        self.metrics.precomputed.set(len(snapshot.answers.table or ()))
        self._ready.set()
        self.metrics.reloads.labels("success").inc()

    def poll_once(self) -> bool:
        """If the followed alias moved, load the version it points at. True when swapped."""
        try:
            target = self._alias_version()
        except Exception as exc:
            log.warning("alias poll of %s failed: %s", self.source, exc)
            return False
        if target is None or (self.current is not None and target == self.current.version):
            return False
        failed_at = self._failed.get(target)
        if (
            failed_at is not None
            and time.monotonic() - failed_at < self.settings.failed_retry_seconds
        ):
            return False  # a broken version is retried now and then, not at every poll
        log.info("alias %s now points at version %s: loading", self.source, target)
        if self.load(f"models:/{self.name}/{target}"):
            self._failed.pop(target, None)
            return True
        self._failed[target] = time.monotonic()
        return False

    # -- background thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Load in the background (readiness waits for it), then follow the alias if any."""
        self.metrics.model_ready.set(0)
        self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Block until a model serves or `timeout` passes; True when ready."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set() and self.current is None:
            if not self.load() and self._stop.wait(self.settings.load_retry_seconds):
                return
        alias = follows_alias(self.source)
        metadata = bool(self.settings.users_csv or self.settings.db_url)
        if not alias and not metadata:
            return
        tick = self.settings.poll_interval_seconds if alias else self.settings.users_refresh_seconds
        while not self._stop.wait(tick):
            if alias:
                self.poll_once()
            if metadata:
                self.refresh_users()

    def refresh_users(self) -> None:
        """Re-read user metadata when due, so users who signed up since get their segment."""
        before = self._users
        users = self._users_metadata()
        snap = self.current
        if snap is not None and users is not None and users is not before:
            snap.fallback.users = users  # one attribute assignment: readers see old or new
