"""Ingestion throughput: Kafka -> validation -> PostgreSQL end to end, against raw COPY of the same rows.

    .venv/bin/python benchmarks/ingest.py [--events 1000000] [--consumers 1] [--writers 2]
        [--batch-size 20000]

Uses the harness's Kafka and PostgreSQL (those recorded in .services.env, or starts them). Pre-fills
a fresh 3-partition topic with course-format lines (1% garbage, 5% repeats), ingests it into a
fresh database with `movierec ingest --until-caught-up` semantics, then COPYs the same parsed rows
into same-shaped tables (same keys and indexes) of the same database: the ceiling the store
could reach if parsing, Kafka and deduplication were free. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movierec_ingestor.batch import Batch
from movierec_ingestor.job import IngestJob, JobOptions
from movierec_ingestor.settings import IngestorSettings
from movierec_ingestor.sources.kafka import KafkaAddress, KafkaSource
from movierec_ingestor.store import Store, copy_buffer

from harness import kafka as harness_kafka
from harness import postgres as harness_postgres
from harness.session import ServiceSession

log = logging.getLogger("benchmarks.ingest")


def make_lines(n: int, seed: int = 1) -> list[bytes]:
    """Course-format lines: 80% watch, 10% rate, 9% recommendations, 1% garbage, 5% repeats."""
    rng = random.Random(seed)
    start = datetime(2025, 10, 1)
    movies = [f"movie+{i}+{1950 + i % 70}" for i in range(5000)]
    lines: list[bytes] = []
    for i in range(n):
        if i % 100 == 99:
            lines.append(
                rng.choice(
                    [
                        b"",
                        b"2025-10-17T01:33:45,x,GET /rate/a=3",
                        b"\xff\x00junk",
                        b"2025-10-17T01:33:45,1,GET /rate/a=9",
                    ]
                )
            )
            continue
        if i % 20 == 19 and lines:
            lines.append(lines[rng.randrange(max(0, i - 1000), i)])
            continue
        t = (start + timedelta(seconds=i // 10, microseconds=rng.randrange(10**6))).isoformat()
        user = rng.randrange(100_000)
        movie = rng.choice(movies)
        roll = rng.random()
        if roll < 0.8:
            body = f"GET /data/m/{movie}/{rng.randrange(200)}.mpg"
        elif roll < 0.9:
            body = f"GET /rate/{movie}={rng.randrange(1, 6)}"
        else:
            picks = ", ".join(rng.sample(movies, 20))
            body = (
                f"recommendation request 17645-team01.isri.cmu.edu:8082, status 200, "
                f"result: {picks}, {rng.randrange(5, 500)} ms"
            )
        lines.append(f"{t}123,{user},{body}".encode())
    return lines


def prefill(bootstrap: str, topic: str, lines: list[bytes], partitions: int) -> float:
    from kafka import KafkaProducer

    began = time.perf_counter()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20, max_request_size=8 << 20
    )
    for i, line in enumerate(lines):
        producer.send(topic, value=line, partition=i % partitions)
    producer.flush(timeout=600)
    producer.close()
    return time.perf_counter() - began


def ingest_in_process(
    bootstrap: str, topic: str, url: str, batch_size: int, writers: int
) -> tuple[dict[str, int], float, float]:
    """Totals, wall seconds and this process's CPU seconds (all threads) of one ingest run."""
    store = Store(url)
    source = KafkaSource(
        KafkaAddress(bootstrap, topic),
        group="bench",
        committed_offsets=store.offsets,
        max_poll_records=batch_size,
    )
    try:
        options = JobOptions(batch_size=batch_size, until_caught_up=True, writers=writers)
        job = IngestJob(source, store, options)
        began, cpu = time.perf_counter(), time.process_time()
        totals = job.run()
        return totals.as_dict(), time.perf_counter() - began, time.process_time() - cpu
    finally:
        source.close()
        store.close()


def ingest_processes(
    bootstrap: str, topic: str, url: str, batch_size: int, *, writers: int, n: int
) -> tuple[dict[str, int], float]:
    Store(url).close()  # migrate once up front, outside the timing
    argv = [
        sys.executable,
        "-m",
        "movierec",
        "ingest",
        "--source",
        f"kafka://{bootstrap}/{topic}",
        "--db",
        url,
        "--until-caught-up",
        "--group",
        "bench",
        "--batch-size",
        str(batch_size),
    ]
    began = time.perf_counter()
    env = {**os.environ, "MOVIEREC_INGESTOR_WRITERS": str(writers)}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    seconds = time.perf_counter() - began
    if any(p.returncode for p in procs):
        raise SystemExit("an ingest process failed")
    return {k: sum(o[k] for o in outs) for k in outs[0]}, seconds


def copy_baseline(url: str, lines: list[bytes]) -> tuple[int, float]:
    """COPY the parsed rows into same-shaped tables (keys and indexes included), 100k per commit."""
    batch = Batch("bench")
    for i, line in enumerate(lines):
        batch.add(line, str(i))
    # Deduplicated as the store would keep them: COPY into keyed tables cannot take repeats.
    tables = {
        "watch": ("watch_events", batch.watch),
        "rate": ("rating_events", batch.rate),
        "recommendation": ("recommendations", batch.recommendation),
    }
    engine = sa.create_engine(url)
    rows_total = 0
    elapsed = 0.0
    with engine.begin() as conn:
        for kind, (table, _) in tables.items():
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS copy_{kind}")
            conn.exec_driver_sql(f"CREATE TABLE copy_{kind} (LIKE {table} INCLUDING ALL)")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for kind, (_, rows) in tables.items():
            unique = list({r[0]: r for r in rows}.values())
            rows_total += len(unique)
            for i in range(0, len(unique), 100_000):
                buf: io.StringIO = copy_buffer(kind, unique[i : i + 100_000])
                began = time.perf_counter()
                cursor.copy_expert(f"COPY copy_{kind} FROM STDIN", buf)
                raw.commit()
                elapsed += time.perf_counter() - began
        cursor.close()
    finally:
        raw.close()
    engine.dispose()
    return rows_total, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=1, help="1: in-process; >1: CLI processes")
    parser.add_argument(
        "--writers",
        type=int,
        default=IngestorSettings().writers,
        help="batches committing at once per consumer (MOVIEREC_INGESTOR_WRITERS)",
    )
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--kafka-dir", type=Path, help="a harness broker's work dir (else .services.env)"
    )
    parser.add_argument(
        "--pg-dir", type=Path, help="a harness PostgreSQL's work dir (else .services.env)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    session = ServiceSession()
    try:
        broker = (
            harness_kafka.attach(args.kafka_dir)
            if args.kafka_dir
            else session.require_as("kafka", harness_kafka.KafkaBroker)
        )
        pg = (
            harness_postgres.attach(args.pg_dir)
            if args.pg_dir
            else session.require_as("postgres", harness_postgres.PostgresServer)
        )
        topic = harness_kafka.create_topic(
            broker.bootstrap, partitions=args.partitions, prefix="bench"
        )
        url = pg.create_database()
        try:
            lines = make_lines(args.events)
            fill_s = prefill(broker.bootstrap, topic, lines, args.partitions)
            print(f"prefilled {len(lines):,} lines into {topic} in {fill_s:.1f} s", flush=True)
            cpu_s = None
            if args.consumers == 1:
                totals, seconds, cpu_s = ingest_in_process(
                    broker.bootstrap, topic, url, args.batch_size, args.writers
                )
            else:
                totals, seconds = ingest_processes(
                    broker.bootstrap,
                    topic,
                    url,
                    args.batch_size,
                    writers=args.writers,
                    n=args.consumers,
                )
            # Several consumers re-read a little around rebalances (the store keeps each event
            # once): the rate counts the topic's lines, not the reads.
            assert totals["read"] >= len(lines), totals
            e2e = len(lines) / seconds
            rows, copy_s = copy_baseline(url, lines)
            copy_rate = rows / copy_s
            print(
                f"end to end : {len(lines):>9,} lines in {seconds:7.1f} s = {e2e:>9,.0f} events/s "
                f"(read {totals['read']:,}, stored {totals['stored']:,}, duplicates {totals['duplicates']:,}, "
                f"dead letters {totals['dead_letters']:,}; consumers {args.consumers}, "
                f"writers {args.writers})"
            )
            if cpu_s:
                print(
                    f"ingestor CPU: {cpu_s:.1f} s = {totals['read'] / cpu_s:,.0f} events per "
                    "CPU-second of the ingest process (all its threads)"
                )
            print(f"raw COPY   : {rows:>9,} rows  in {copy_s:7.1f} s = {copy_rate:>9,.0f} rows/s")
            print(f"ratio end-to-end / raw COPY = {e2e / copy_rate:.2f}")
            print(
                json.dumps(
                    {
                        "events": len(lines),
                        "e2e_events_per_s": round(e2e),
                        "copy_rows_per_s": round(copy_rate),
                        "ratio": round(e2e / copy_rate, 3),
                        "consumers": args.consumers,
                        "writers": args.writers,
                        "batch_size": args.batch_size,
                        "ingest_cpu_s": round(cpu_s, 1) if cpu_s else None,
                        "load_average_1m": os.getloadavg()[0],
                    }
                )
            )
        finally:
            pg.drop_database(url.rsplit("/", 1)[1])
            harness_kafka.delete_topic(broker.bootstrap, topic)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
