"""Keep-alive HTTP to the track upstreams: per-thread persistent connections, time-limited calls.

Each router thread keeps one `http.client` connection per upstream (a pool of threads x tracks
connections), which costs far less per call than a general-purpose client. GET is idempotent,
so a call that fails on a reused connection before any byte of answer (the upstream closed an
idle keep-alive connection) is retried once on a fresh one; nothing else is retried.
"""

from __future__ import annotations

import http.client
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

PASSED_HEADERS = ("Content-Type", "X-Model-Version", "X-Track", "Retry-After")
MAX_BODY = 64 * 1024
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class Upstream:
    """What one upstream said: a status with body and headers, or an error kind."""

    status: int
    body: bytes
    headers: dict[str, str]
    error: str | None = None  # "timeout" | "connect" | "protocol" | None


class _Target:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc


class Upstreams:
    """`get(track, path, accept, timeout)` never raises; connections are per thread."""

    def __init__(self, tracks: dict[str, str], pool_size: int, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size  # kept for settings compatibility: one connection per thread
        self._targets = {name: _Target(url) for name, url in tracks.items()}
        self._local = threading.local()
        self._all: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __contains__(self, track: str) -> bool:
        return track in self._targets

    def _conn(self, track: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to `track` and whether it is an open, reused one."""
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        conn = conns.get(track)
        if conn is not None:
            return conn, conn.sock is not None
        t = self._targets[track]
        cls = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
        conn = cls(t.host, t.port, timeout=self.connect_timeout)
        conns[track] = conn
        with self._lock:
            self._all.add(conn)
        return conn, False

    def get(self, track: str, path: str, accept: str | None, timeout: float) -> Upstream:
        target = self._targets[track]
        headers = {"Host": target.host_header}
        if accept:
            headers["Accept"] = accept
        for attempt in (0, 1):
            conn, reused = self._conn(track)
            try:
                if conn.sock is None:
                    conn.timeout = min(self.connect_timeout, timeout)
                    conn.connect()
                    fresh = cast(socket.socket, conn.sock)  # set by connect()
                    fresh.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock: socket.socket = conn.sock
                sock.settimeout(timeout)
                conn.request("GET", target.prefix + path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    conn.close()
                    return Upstream(0, b"", {}, "protocol")
                if resp.will_close:
                    conn.close()
                kept = {h: v for h in PASSED_HEADERS if (v := resp.getheader(h)) is not None}
                return Upstream(resp.status, body, kept)
            except _STALE:
                conn.close()
                if reused and attempt == 0:
                    continue  # the upstream closed an idle connection: one fresh try
                return Upstream(0, b"", {}, "connect")
            except TimeoutError:
                conn.close()
                return Upstream(0, b"", {}, "timeout")
            except (OSError, http.client.HTTPException):
                conn.close()
                return Upstream(0, b"", {}, "connect")
        return Upstream(0, b"", {}, "connect")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
