"""Simulated users inside the cluster: ask the router's Service, watch and rate, log to Kafka.

Run in a pod of the application image by tests/e2e/test_cluster.py. Live traffic (LIVE=1):
every request is stamped by the wall clock, as the serving pods stamp what they served, so the
online evaluator can join the answers with the users' later watches and ratings; the users
think briefly and watch at most MAX_MINUTES minutes, so their lines are never far ahead of the
clock (the ingestor refuses events from the future). Prints one JSON line per batch of requests
(running totals), so the test follows the traffic from the pod's log.
"""

import json
import os
import time
from datetime import UTC, datetime

from movierec_simulator.client import run_sessions
from movierec_simulator.sinks import KafkaSink
from movierec_simulator.world import World


def wall_clock() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def main() -> None:
    world = World.generate(
        int(os.environ["USERS"]), int(os.environ["MOVIES"]), int(os.environ["SEED"])
    )
    users = [int(u) for u in world.user_ids]
    live = os.environ.get("LIVE") == "1"
    clock = wall_clock() if live else datetime.fromisoformat(os.environ["START"])
    stop = time.monotonic() + float(os.environ["SECONDS"])
    batch, pause = int(os.environ.get("BATCH", "20")), float(os.environ.get("PAUSE", "0.3"))
    think, minutes = float(os.environ.get("THINK", "5")), int(os.environ.get("MAX_MINUTES", "30"))
    totals: dict = {"requests": 0, "errors": 0, "by_track": {}, "by_version": {}, "batches": 0}
    with KafkaSink(os.environ["KAFKA"], os.environ.get("TOPIC", "movielog")) as sink:
        while time.monotonic() < stop:
            summary = run_sessions(
                world, os.environ["ROUTER"], users, batch, sink,
                seed=totals["batches"], deadline_s=60, start=clock, timeout_s=2.0,
                think_time_s=think, max_minutes_per_view=minutes,
                live_clock=wall_clock if live else None,
            )  # fmt: skip
            sink.flush()
            # live: the next batch starts now, not when this batch's last user stops watching
            clock = wall_clock() if live else (summary.end or clock)
            for o in summary.outcomes:
                totals["requests"] += 1
                totals["errors"] += o.status != 200
                track, version = o.track or "none", o.model_version or "none"
                totals["by_track"][track] = totals["by_track"].get(track, 0) + 1
                totals["by_version"][version] = totals["by_version"].get(version, 0) + 1
            totals["batches"] += 1
            totals["time"] = time.time()
            print(json.dumps(totals), flush=True)
            time.sleep(pause)


if __name__ == "__main__":
    main()
