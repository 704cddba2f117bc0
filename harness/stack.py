"""The set of real services: dependencies, parallel start-up, attach by state dir, stop by PID."""

from __future__ import annotations

import concurrent.futures
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness import (
    alertmanager,
    kafka,
    kube,
    mlflow_server,
    postgres,
    prometheus,
    promstack,
    pushgateway,
    smtp,
)
from harness.ports import HOST
from harness.process import ServiceError

log = logging.getLogger(__name__)


class Handle(Protocol):
    """What every running service offers."""

    def env(self) -> dict[str, str]: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...
    def running(self) -> bool: ...


@dataclass(frozen=True)
class Spec:
    """How to install, start and find one service."""

    name: str
    needs: tuple[str, ...]
    dir_var: str
    address_var: str
    install: Callable[[], Any]
    start: Callable[[Path, Mapping[str, str]], Handle]
    attach: Callable[[Path], Handle]


def _start_mlflow(workdir: Path, env: Mapping[str, str]) -> Handle:
    server = postgres.attach(Path(env["MOVIEREC_PG_DIR"]))
    database = server.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")
    return mlflow_server.start(workdir, database)


def _start_alertmanager(workdir: Path, env: Mapping[str, str]) -> Handle:
    config = alertmanager.email_config(HOST, int(env["MOVIEREC_SMTP_PORT"]))
    return alertmanager.start(workdir, config_text=config)


def _start_prometheus(workdir: Path, env: Mapping[str, str]) -> Handle:
    pushgateway_address = env["MOVIEREC_PUSHGATEWAY_URL"].removeprefix("http://")
    return prometheus.start(
        workdir,
        scrape_targets={"pushgateway": [pushgateway_address]},
        scrape_interval="5s",
        alertmanagers=[env["MOVIEREC_ALERTMANAGER_URL"]],
    )


# In start-up order; `needs` lists services whose variables the start function reads.
SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec(
            "postgres",
            (),
            "MOVIEREC_PG_DIR",
            "MOVIEREC_PG_URL",
            postgres.ensure_installed,
            lambda workdir, _env: postgres.start(workdir),
            postgres.attach,
        ),
        Spec(
            "kafka",
            (),
            "MOVIEREC_KAFKA_DIR",
            "MOVIEREC_KAFKA_BOOTSTRAP",
            kafka.ensure_installed,
            lambda workdir, _env: kafka.start(workdir),
            kafka.attach,
        ),
        Spec(
            "cluster",
            (),
            "MOVIEREC_KUBE_DIR",
            "MOVIEREC_KUBE_API_URL",
            kube.ensure_installed,
            lambda workdir, _env: kube.start(workdir),
            kube.attach,
        ),
        Spec(
            "smtp",
            (),
            "MOVIEREC_SMTP_DIR",
            "MOVIEREC_SMTP_PORT",
            smtp.ensure_installed,
            lambda workdir, _env: smtp.start(workdir),
            smtp.attach,
        ),
        Spec(
            "pushgateway",
            (),
            "MOVIEREC_PUSHGATEWAY_DIR",
            "MOVIEREC_PUSHGATEWAY_URL",
            promstack.ensure_installed,
            lambda workdir, _env: pushgateway.start(workdir),
            pushgateway.attach,
        ),
        Spec(
            "mlflow",
            ("postgres",),
            "MOVIEREC_MLFLOW_DIR",
            "MOVIEREC_MLFLOW_URI",
            mlflow_server.ensure_installed,
            _start_mlflow,
            mlflow_server.attach,
        ),
        Spec(
            "alertmanager",
            ("smtp",),
            "MOVIEREC_ALERTMANAGER_DIR",
            "MOVIEREC_ALERTMANAGER_URL",
            promstack.ensure_installed,
            _start_alertmanager,
            alertmanager.attach,
        ),
        Spec(
            "prometheus",
            ("pushgateway", "alertmanager"),
            "MOVIEREC_PROMETHEUS_DIR",
            "MOVIEREC_PROMETHEUS_URL",
            promstack.ensure_installed,
            _start_prometheus,
            prometheus.attach,
        ),
    )
}


def resolve(names: Iterable[str] | None) -> list[str]:
    """The requested services plus what they need, in start-up order."""
    wanted = set(SPECS) if names is None else set(names)
    unknown = wanted - set(SPECS)
    if unknown:
        raise ServiceError(f"unknown services {sorted(unknown)}; known: {', '.join(SPECS)}")
    pending = list(wanted)
    while pending:
        for need in SPECS[pending.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                pending.append(need)
    return [name for name in SPECS if name in wanted]


def attach_running(name: str, env: Mapping[str, str]) -> Handle | None:
    """The service recorded in ``env`` if it still runs, else None."""
    handle = attach_recorded(name, env)
    return handle if handle is not None and handle.running() else None


def attach_recorded(name: str, env: Mapping[str, str]) -> Handle | None:
    """The service recorded in ``env``, running or not (None when nothing is recorded)."""
    folder = env.get(SPECS[name].dir_var)
    if not folder or not (Path(folder) / "state.json").exists():
        return None
    return SPECS[name].attach(Path(folder))


def start_services(
    names: Iterable[str], run_dir: Path, env: Mapping[str, str] | None = None
) -> dict[str, Handle]:
    """Start services in parallel, each as soon as the services it needs are ready.

    ``env`` holds variables of services already running that these may need. On failure
    everything started here is stopped again and the first error is raised.
    """
    known = dict(env or {})
    todo = list(names)
    started: dict[str, Handle] = {}
    errors: list[str] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            running: dict[concurrent.futures.Future[Handle], str] = {}
            while todo or running:
                ready = [
                    name
                    for name in todo
                    if all(
                        need not in todo and need not in running.values()
                        for need in SPECS[name].needs
                    )
                ]
                if not errors:
                    for name in ready:
                        todo.remove(name)
                        future = pool.submit(SPECS[name].start, run_dir / name, dict(known))
                        running[future] = name
                if not running:
                    if todo and not errors:
                        raise ServiceError(f"unsatisfiable dependencies among {todo}")
                    break
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    name = running.pop(future)
                    try:
                        started[name] = future.result()
                        known.update(started[name].env())
                    except Exception as err:  # collect every failure, then stop all
                        errors.append(f"{name}: {err}")
        if errors:
            raise ServiceError("could not start services:\n" + "\n".join(errors))
    except BaseException:
        stop_handles(started)
        raise
    return {name: started[name] for name in SPECS if name in started}


def stop_handles(handles: Mapping[str, Handle]) -> None:
    """Stop services in parallel (none needs another to shut down); report every failure."""
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(handles))) as pool:
        futures = {pool.submit(_timed_stop, name, handle): name for name, handle in handles.items()}
        for future, name in futures.items():
            try:
                future.result()
            except Exception as err:  # keep stopping the others
                errors.append(f"{name}: {err}")
    if errors:
        raise ServiceError("could not stop:\n" + "\n".join(errors))


def _timed_stop(name: str, handle: Handle) -> None:
    begun = time.monotonic()
    handle.stop()
    log.debug("stopped %s in %.1fs", name, time.monotonic() - begun)


def install(names: Iterable[str] | None = None) -> None:
    """Install (download, fetch, build) the requested services into the cache."""
    done: set[int] = set()
    for name in resolve(names):
        installer = SPECS[name].install
        if id(installer) in done:
            continue
        log.debug("installing %s", name)
        installer()
        done.add(id(installer))
