"""Per-user track assignment through the LaunchDarkly server SDK (SDK key or flag-data file)."""

from __future__ import annotations

import logging
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
            from ldclient.integrations import Files

            config = Config(
                "movierec-offline-file",
                update_processor_class=Files.new_data_source(
                    paths=[flags_file],
                    auto_update=True,
                    poll_interval=poll_seconds,
                    force_polling=True,
                ),
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
