"""Per-user track assignment through the LaunchDarkly server SDK (SDK key or flag-data file)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from movierec_recommender.router.flagdata import KILL_SWITCH_FLAG, STABLE, TRACK_FLAG

log = logging.getLogger(__name__)


class Assigner:
    """`track(user_id)`: the kill switch wins, else the `movierec-track` rollout; default stable."""

    def __init__(
        self,
        *,
        flags_file: str | None = None,
        sdk_key: str | None = None,
        poll_seconds: float = 1.0,
        start_wait: float = 5.0,
        stable: str = STABLE,
        cache_max: int = 200_000,
    ) -> None:
        from ldclient.client import LDClient
        from ldclient.config import Config

        self.stable = stable
        if sdk_key:
            config = Config(sdk_key, send_events=False)
        elif flags_file:
            config = Config(
                "movierec-offline-file",
                update_processor_class=_mounted_file_source(flags_file, poll_seconds),
                send_events=False,
            )
        else:
            config = Config("movierec-offline", offline=True, send_events=False)
        # Evaluating two flags costs ~0.2 ms; a user's track only changes when flag data does,
        # so answers are cached per user and the cache is dropped on every flag change.
        self._cache: dict[int, str] = {}
        self._cache_max = cache_max
        self._client: Any = LDClient(config, start_wait=start_wait)
        self._client.flag_tracker.add_listener(self._flags_changed)
        if not self._client.is_initialized() and not config.offline:
            log.warning("LaunchDarkly not initialised yet: everyone gets %s until it is", stable)

    def _flags_changed(self, change: Any) -> None:
        self._cache = {}  # a new dict: readers holding the old one finish on it

    def track(self, user_id: int) -> str:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        cache = self._cache
        track = self._evaluate(user_id)
        if self._client.is_initialized():  # do not cache the default given before data arrived
            if len(cache) >= self._cache_max:
                cache.clear()
            cache[user_id] = track
        return track

    def _evaluate(self, user_id: int) -> str:
        from ldclient import Context

        context = Context.create(str(user_id))
        if self._client.variation(KILL_SWITCH_FLAG, context, False) is True:
            return self.stable
        value = self._client.variation(TRACK_FLAG, context, self.stable)
        return value if isinstance(value, str) and value else self.stable

    def close(self) -> None:
        self._client.close()


def _signature(path: str) -> tuple[int, int, int, int] | None:
    """What changes when the file at ``path`` does, looked up through every symlink *now*."""
    try:
        st = os.stat(path)  # follows `flags.json -> ..data/flags.json -> ..<timestamp>/...`
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _mounted_file_source(path: str, poll_seconds: float) -> Any:
    """An SDK data source that re-reads ``path`` whenever what it points at changes.

    The SDK's own auto-update resolves the real path once; a ConfigMap volume swaps its
    ``..data`` symlink to a new ``..<timestamp>`` directory and deletes the old one, so the
    SDK would watch a deleted file for ever. Here every poll looks the path up again and each
    change loads the file through a fresh SDK file source (its parser, its store updates)."""
    from ldclient.integrations import Files
    from ldclient.interfaces import UpdateProcessor

    class MountedFileSource(UpdateProcessor):
        def __init__(self, config: Any, store: Any, ready: threading.Event) -> None:
            self._load_once: Any = Files.new_data_source(paths=[path], auto_update=False)
            self._config, self._store, self._ready = config, store, ready
            self._source: Any = None
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._poll, name="movierec-flags-file", daemon=True
            )

        def _load(self) -> None:
            source = self._load_once(self._config, self._store, threading.Event())
            source.start()  # reads the file and hands its flags to the SDK (no thread)
            if source.initialized() or self._source is None:
                self._source = source

        def start(self) -> None:
            self._seen = _signature(path)  # before reading: a change during the read is seen
            self._load()
            self._ready.set()
            self._thread.start()

        def _poll(self) -> None:
            while not self._stop.wait(poll_seconds):
                now = _signature(path)
                if now is not None and now != self._seen:
                    self._seen = now
                    log.info("flag data %s changed: reloading", path)
                    self._load()

        def stop(self) -> None:
            self._stop.set()

        def initialized(self) -> bool:
            return bool(self._source is not None and self._source.initialized())

    return MountedFileSource
