"""`python -m harness up|down|status|build [--only a,b]`: the real services for tests and developers."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import envfile, stack
from harness.process import ServiceError, pid_alive, pid_cmdline, stop_pid

log = logging.getLogger("harness")


def _only(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def cmd_build(only: list[str] | None) -> int:
    """Install everything requested into the cache."""
    started = time.monotonic()
    stack.install(only)
    print(f"installed {', '.join(stack.resolve(only))} in {time.monotonic() - started:.0f}s")
    return 0


def cmd_up(only: list[str] | None) -> int:
    """Start what is requested and not running yet; record it in .services.env."""
    begun = time.monotonic()
    env = _without_legacy_kube(envfile.read())
    recorded = _recorded(env)
    if recorded and any(stack.attach_running(name, env) is None for name in recorded):
        log.warning("some services in %s are gone; restarting them all", envfile.default_path())
        cmd_down()
        env, recorded = {}, []
    wanted = stack.resolve(only)
    missing = [name for name in wanted if name not in recorded]
    if missing:
        stack.install(missing)
        fresh = not env.get("MOVIEREC_SERVICES_DIR")
        run_dir = Path(env.get("MOVIEREC_SERVICES_DIR") or _new_run_dir())
        try:
            handles = stack.start_services(missing, run_dir, env)
        except BaseException:
            if fresh:  # everything started here was stopped again
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        names = [name for name in stack.SPECS if name in recorded or name in handles]
        merged = {**env, "MOVIEREC_SERVICES": ",".join(names)}
        merged["MOVIEREC_SERVICES_DIR"] = str(run_dir)
        for handle in handles.values():
            merged.update(handle.env())
        envfile.write(merged)
        env = merged
    _print_addresses(env)
    print(f"services up in {time.monotonic() - begun:.1f}s; variables in {envfile.default_path()}")
    return 0


def cmd_down() -> int:
    """Stop every recorded service by PID and remove its temporary files."""
    env = envfile.read()
    if not env:
        print("no services recorded; nothing to stop")
        return 0
    run_dir = env.get("MOVIEREC_SERVICES_DIR", "")
    errors = []
    handles = {}
    for name in _recorded(env):
        try:
            handle = stack.attach_running(name, env)
            if handle is None and name == "cluster":
                # A node with one dead process still has pods, mounts and chains to remove.
                handle = stack.attach_recorded(name, env)
        except (ServiceError, OSError, ValueError) as err:
            errors.append(f"{name}: {err}")
            continue
        if handle is not None:
            handles[name] = handle
    try:
        stack.stop_handles(handles)
    except ServiceError as err:
        errors.append(str(err))
    # Belt and braces: any recorded PID still alive inside our run dir is stopped too.
    for key, value in env.items():
        if key.endswith("_PID") and value.isdigit() and run_dir:
            pid = int(value)
            if pid_alive(pid) and run_dir in pid_cmdline(pid):
                stop_pid(pid, marker=run_dir, name=key)
    if run_dir and Path(run_dir).name.startswith("movierec-services-"):
        shutil.rmtree(run_dir, ignore_errors=True)
    envfile.remove()
    if errors:
        print("stopped with errors:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    print("services stopped")
    return 0


def cmd_status() -> int:
    """Show each recorded service, whether it runs, and its address."""
    env = envfile.read()
    recorded = _recorded(env)
    if not recorded:
        print("no services recorded")
        return 0
    down = 0
    for name in recorded:
        alive = stack.attach_running(name, env) is not None
        down += not alive
        print(f"{name:<13} {'up' if alive else 'DOWN':<5} {_address(name, env)}")
    return 1 if down else 0


def _without_legacy_kube(env: dict[str, str]) -> dict[str, str]:
    """Stop a node-less `kube` control plane recorded by an older harness; `cluster` replaces it."""
    names = env.get("MOVIEREC_SERVICES", "").split(",")
    if "kube" not in names or "kube" in stack.SPECS:
        return env
    marker = env.get("MOVIEREC_KUBE_DIR", "")
    for key in (
        "MOVIEREC_KUBE_CONTROLLER_MANAGER_PID",
        "MOVIEREC_KUBE_APISERVER_PID",
        "MOVIEREC_ETCD_PID",
    ):
        value = env.get(key, "")
        if marker and value.isdigit():
            stop_pid(int(value), marker=marker, name=key)
    kept = {
        key: value
        for key, value in env.items()
        if not key.startswith(("MOVIEREC_KUBE", "MOVIEREC_ETCD"))
    }
    kept["MOVIEREC_SERVICES"] = ",".join(name for name in names if name and name != "kube")
    envfile.write(kept)
    log.info("stopped the old `kube` service; `cluster` replaces it")
    return kept


def _recorded(env: dict[str, str]) -> list[str]:
    names = [name for name in env.get("MOVIEREC_SERVICES", "").split(",") if name]
    return [name for name in names if name in stack.SPECS]


def _new_run_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="movierec-services-"))


def _address(name: str, env: dict[str, str]) -> str:
    address = env.get(stack.SPECS[name].address_var, "")
    if name == "smtp":
        return f"{env.get('MOVIEREC_SMTP_HOST')}:{address}"
    if name == "cluster":
        return f"{address}  (KUBECONFIG={env.get('KUBECONFIG')})"
    return address


def _print_addresses(env: dict[str, str]) -> None:
    for name in _recorded(env):
        print(f"{name:<13} {_address(name, env)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m harness``."""
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "build"])
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of: {','.join(stack.SPECS)} (needed services are added)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection retries while starting
    try:
        if args.command == "build":
            return cmd_build(_only(args.only))
        if args.command == "up":
            return cmd_up(_only(args.only))
        if args.command == "down":
            return cmd_down()
        return cmd_status()
    except ServiceError as err:
        print(f"harness {args.command} failed: {err}", file=sys.stderr)
        return 1
