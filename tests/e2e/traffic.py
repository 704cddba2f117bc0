"""Simulated users inside the cluster: ask the router's Service, watch and rate, log to Kafka.

Run in a pod of the application image by tests/e2e/test_cluster.py. Prints one JSON line per
batch of requests (running totals), so the test follows the traffic from the pod's log.
"""

import json
import os
import time
from datetime import datetime

from movierec_simulator.client import run_sessions
from movierec_simulator.sinks import KafkaSink
from movierec_simulator.world import World


def main() -> None:
    world = World.generate(
        int(os.environ["USERS"]), int(os.environ["MOVIES"]), int(os.environ["SEED"])
    )
    users = [int(u) for u in world.user_ids]
    clock = datetime.fromisoformat(os.environ["START"])
    stop = time.monotonic() + float(os.environ["SECONDS"])
    batch, pause = int(os.environ.get("BATCH", "20")), float(os.environ.get("PAUSE", "0.3"))
    totals: dict = {"requests": 0, "errors": 0, "by_track": {}, "by_version": {}, "batches": 0}
    with KafkaSink(os.environ["KAFKA"], os.environ.get("TOPIC", "movielog")) as sink:
        while time.monotonic() < stop:
            summary = run_sessions(
                world, os.environ["ROUTER"], users, batch, sink,
                seed=totals["batches"], deadline_s=60, start=clock, timeout_s=2.0,
            )  # fmt: skip
            sink.flush()
            clock = summary.end or clock
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
