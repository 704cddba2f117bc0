"""`movierec ingest`: stream lines from a file or Kafka into the database (and the quality CLI)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from movierec_ingestor.errors import BadInputError

if TYPE_CHECKING:
    from movierec_ingestor.settings import IngestorSettings
    from movierec_ingestor.sources.base import Source
    from movierec_ingestor.store import Store

log = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ingest` (and the quality gate's commands, when that package is present)."""
    parser = sub.add_parser(
        "ingest",
        help="validate stream lines and store them (file or Kafka -> database)",
        description=(
            "Read course-format lines, dead-letter invalid ones, store valid events "
            "idempotently with the source offsets in one transaction per batch. Prints one "
            'JSON line: {"read", "stored", "duplicates", "dead_letters"} of this run. '
            "Settings also come from MOVIEREC_INGESTOR_* environment variables."
        ),
    )
    parser.add_argument(
        "--source",
        required=True,
        help="FILE or kafka://HOST:PORT/TOPIC[,TOPIC] (e.g. movielog,recommendations)",
    )
    parser.add_argument("--db", help="database URL (default sqlite:///var/movierec.db)")
    parser.add_argument(
        "--until-caught-up",
        action="store_true",
        help="CronJob mode: stop once everything present at start is stored",
    )
    parser.add_argument("--max-seconds", type=_positive_float, help="stop after this many seconds")
    parser.add_argument("--group", help="Kafka consumer group (default movierec-ingestor)")
    parser.add_argument("--batch-size", type=_positive_int, help="lines per transaction")
    parser.add_argument("--metadata", help="folder with users.csv/movies.csv, or API base URL")
    parser.add_argument("--pushgateway", help="Pushgateway URL for CronJob metrics")
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics on this port (continuous mode)"
    )
    parser.set_defaults(func=run_ingest)
    try:
        quality_cli = importlib.import_module("movierec_ingestor.quality.cli")
    except ModuleNotFoundError as exc:
        if not (exc.name and "movierec_ingestor.quality".startswith(exc.name)):
            raise
        return  # the quality gate is not part of this build
    quality_cli.register(sub)


def _settings(args: argparse.Namespace) -> IngestorSettings:
    from movierec_ingestor.settings import IngestorSettings

    overrides = {
        "db_url": args.db,
        "group": args.group,
        "batch_size": args.batch_size,
        "metadata": args.metadata,
        "pushgateway_url": args.pushgateway,
        "metrics_port": args.metrics_port,
    }
    return IngestorSettings(**{k: v for k, v in overrides.items() if v is not None})


def _open_source(spec: str, store: Store, settings: IngestorSettings, drain: bool) -> Source:
    policy = settings.time_policy()
    if spec.startswith("kafka://"):
        from movierec_ingestor.sources.kafka import KafkaAddress, KafkaSource
        from movierec_ingestor.sources.multi import MultiSource

        address = KafkaAddress.parse(spec)
        sources: list[Source] = [
            KafkaSource(
                address.one(topic),
                # One group per topic: a rebalance of one topic does not stall the other.
                group=settings.group if i == 0 else f"{settings.group}.{topic}",
                committed_offsets=store.offsets,
                max_poll_records=settings.batch_size,
                session_timeout_ms=settings.kafka_session_timeout_ms,
                policy=policy,
                client_config=settings.kafka_client_config(),
            )
            for i, topic in enumerate(address.topics)
        ]
        return sources[0] if len(sources) == 1 else MultiSource(sources)
    from movierec_ingestor.sources.file import FileSource

    source = FileSource(spec, take_unterminated=drain, policy=policy)
    source.resume(store.offsets(source.name), store.identity(source.name))
    return source


def _writers(store: Store, settings: IngestorSettings) -> int:
    # SQLite takes one writer at a time: concurrent batches would only wait on its lock.
    return settings.writers if store.dialect == "postgresql" else 1


def _check_source(spec: str) -> None:
    if spec.startswith("kafka://"):
        from movierec_ingestor.sources.kafka import KafkaAddress

        KafkaAddress.parse(spec)
    elif "://" in spec:
        raise BadInputError(
            f"unsupported source {spec!r}: use a file path or kafka://HOST:PORT/TOPIC"
        )
    elif not Path(spec).is_file():
        raise BadInputError(f"source file {spec} does not exist (or is not a file)")


def run_ingest(args: argparse.Namespace) -> int:
    """The `ingest` command: returns the exit code, prints the run's JSON summary."""
    from movierec_ingestor.db import normalize_url
    from movierec_ingestor.job import IngestJob, JobOptions
    from movierec_ingestor.metadata import MetadataClient, MetadataSync, load_csv_dir
    from movierec_ingestor.metrics import IngestMetrics
    from movierec_ingestor.schema import movies, users
    from movierec_ingestor.store import Store

    # Alembic reports every plugin and revision at INFO; the job's own log says what matters.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    settings = _settings(args)
    _check_source(args.source)
    normalize_url(settings.db_url)
    client = None
    csv_rows = None
    if settings.metadata:
        if "://" in settings.metadata:
            client = MetadataClient(settings.metadata, timeout_s=settings.metadata_timeout_s)
        else:
            csv_rows = load_csv_dir(settings.metadata)
    store = Store(settings.db_url)
    options = JobOptions(
        batch_size=settings.batch_size,
        poll_timeout_s=settings.poll_timeout_s,
        until_caught_up=args.until_caught_up,
        max_seconds=args.max_seconds,
        db_retry_s=settings.db_retry_s,
        writers=_writers(store, settings),
    )
    metrics = IngestMetrics()
    if settings.metrics_port and not options.bounded:
        metrics.serve(settings.metrics_port, settings.metrics_addr)
    stop = threading.Event()
    try:
        if csv_rows is not None:
            n = store.upsert(users, csv_rows[0]) + store.upsert(movies, csv_rows[1])
            log.info("metadata: upserted %d users and movies from %s", n, settings.metadata)
        source = _open_source(args.source, store, settings, drain=options.bounded)
        try:
            sync = (
                MetadataSync(store, client, max_lookups=settings.metadata_max_lookups)
                if client
                else None
            )
            job = IngestJob(source, store, options, metrics=metrics, metadata=sync, stop=stop)
            with _stop_on_signals(stop):
                totals = job.run()
        finally:
            source.close()
    finally:
        store.close()
        if settings.pushgateway_url and options.bounded:
            metrics.push(settings.pushgateway_url, settings.pushgateway_job)
    print(json.dumps(totals.as_dict()), flush=True)
    return 0


class _stop_on_signals:  # noqa: N801 - used as a context manager, reads like one
    """SIGTERM/SIGINT end the run after the in-flight batch commits (main thread only)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        self.stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
