"""Keep-alive HTTP to the track upstreams: per-thread persistent connections, time-limited calls.

Each router thread keeps one connection per upstream (a pool of threads x tracks connections).
Every routed answer makes one call, so the call is a minimal HTTP/1.1 GET over a plain socket:
one `sendall` of a prebuilt request, `recv` until the header ends, then the body by
`Content-Length` (or chunked, or until close). `http.client` did the same for ~150 us of CPU
per call (a buffered file per response, the email-package header parser, header validation),
a third of the router's cost per answer; this does it for a fraction. GET is idempotent, so a
call that fails on a reused connection before any byte of answer (the upstream closed an idle
keep-alive connection) is retried once on a fresh one; nothing else is retried.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from urllib.parse import urlsplit

# lower-case name -> the name passed on (the headers a routed answer keeps)
PASSED_HEADERS = {
    "content-type": "Content-Type",
    "x-model-version": "X-Model-Version",
    "x-track": "X-Track",
    "retry-after": "Retry-After",
}
MAX_BODY = 64 * 1024
MAX_HEAD = 16 * 1024


class _StaleError(Exception):
    """The peer closed the connection before sending any byte of an answer."""


class _ProtocolError(Exception):
    """The answer is not HTTP/1.x we accept (malformed, too big)."""


@dataclass(frozen=True)
class Upstream:
    """What one upstream said: a status with body and headers, or an error kind."""

    status: int
    body: bytes
    headers: dict[str, str]
    error: str | None = None  # "timeout" | "connect" | "protocol" | None
    length: int | None = None  # of a HEAD: the Content-Length the upstream announced


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

    def request(self, path: str, accept: str | None, method: str = "GET") -> bytes:
        accept_line = f"Accept: {accept}\r\n" if accept else ""
        line = f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
        return (line + accept_line + "\r\n").encode("latin-1")


class _Conn:
    """One thread's connection to one upstream (None until connected, or after a close)."""

    __slots__ = ("__weakref__", "sock")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


def _recv(sock: socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)
    return sock.recv(65536)


def parse_answer(data: bytes, head: bool, eof: bool) -> tuple[Upstream, bool] | None:
    """The answer at the start of `data`: (answer, whether the connection can be reused), or
    None while more bytes are needed. `eof`: the upstream closed after `data`. The answer to a
    HEAD has headers only, whatever its Content-Length says. Raises _ProtocolError for what is
    not HTTP/1.x we accept (malformed, too big, cut short). Pure: the blocking client and the
    event-loop one (`router.loopforward`) read the same way."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD or (eof and data):
            raise _ProtocolError
        if eof:
            raise _StaleError
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise _ProtocolError
    status = int(code)
    kept: dict[str, str] = {}
    length = chunked = None
    connection = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key in PASSED_HEADERS:
            kept[PASSED_HEADERS[key]] = value.strip()
        elif key == "content-length":
            length = value.strip()
        elif key == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif key == "connection":
            connection = value.strip().lower()
    reusable = (version == "HTTP/1.1" and connection != "close") or connection == "keep-alive"
    reusable = reusable and not eof
    body = data[end + 4 :]
    if head or status < 200 or status in {204, 304}:
        announced = int(length) if head and length is not None and length.isdigit() else None
        return Upstream(status, b"", kept, length=announced), reusable and not body
    if chunked:
        whole = _chunked_body(body)
        if whole is None:
            if eof:
                raise _ProtocolError
            return None
        body, rest_len = whole
        return Upstream(status, body, kept), reusable and rest_len == 0
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise _ProtocolError
        size = int(length)
        if len(body) < size:
            if eof:
                raise _ProtocolError
            return None
        # extra bytes: the stream is out of step
        return Upstream(status, body[:size], kept), reusable and len(body) == size
    if len(body) > MAX_BODY:
        raise _ProtocolError
    if not eof:
        return None  # the body runs until the upstream closes
    return Upstream(status, body, kept), False


def _chunked_body(data: bytes) -> tuple[bytes, int] | None:
    """A chunked body (no trailers expected; bounded by MAX_BODY): (body, bytes left over after
    it), or None while it is incomplete."""
    body = b""
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            if len(data) - pos > MAX_HEAD:
                raise _ProtocolError
            return None
        size_text = data[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _ProtocolError from None
        if size < 0:
            raise _ProtocolError
        need = eol + 2 + size + 2
        if len(data) < need:
            if len(body) + size > MAX_BODY:
                raise _ProtocolError
            return None
        if size == 0:
            return body, len(data) - need
        body += data[eol + 2 : eol + 2 + size]
        if len(body) > MAX_BODY:
            raise _ProtocolError
        pos = need


def _exchange(
    sock: socket.socket, request: bytes, deadline: float, head: bool = False
) -> tuple[Upstream, bool]:
    """Send one GET (or HEAD) and read its answer: (answer, whether the connection can be
    reused)."""
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    sock.sendall(request)
    data = b""
    while True:
        chunk = _recv(sock, deadline)
        data += chunk
        parsed = parse_answer(data, head, eof=not chunk)
        if parsed is not None:
            return parsed


class Upstreams:
    """`get(track, path, accept, timeout)` never raises; connections are per thread."""

    def __init__(self, tracks: dict[str, str], pool_size: int, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size  # the blocking path: one connection per thread and upstream
        self._targets = {name: _Target(url) for name, url in tracks.items()}
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._all: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __contains__(self, track: str) -> bool:
        return track in self._targets

    def _conn(self, track: str) -> _Conn:
        conns: dict[str, _Conn] = self._local.__dict__.setdefault("c", {})
        conn = conns.get(track)
        if conn is None:
            conn = conns[track] = _Conn()
            with self._lock:
                self._all.add(conn)
        return conn

    def get(
        self, track: str, path: str, accept: str | None, timeout: float, *, head: bool = False
    ) -> Upstream:
        target = self._targets[track]
        request = target.request(path, accept, "HEAD" if head else "GET")
        deadline = time.monotonic() + timeout
        conn = self._conn(track)
        for attempt in (0, 1):
            reused = conn.sock is not None
            try:
                if conn.sock is None:
                    connect = min(self.connect_timeout, max(deadline - time.monotonic(), 0.001))
                    sock = socket.create_connection((target.host, target.port), timeout=connect)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if target.https:
                        if self._tls is None:
                            self._tls = ssl.create_default_context()
                        sock = self._tls.wrap_socket(sock, server_hostname=target.host)
                    conn.sock = sock
                up, reusable = _exchange(conn.sock, request, deadline, head)
                if not reusable:
                    conn.close()
                return up
            except (_StaleError, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue  # the upstream closed an idle connection: one fresh try
                return Upstream(0, b"", {}, "connect")
            except TimeoutError:
                conn.close()
                return Upstream(0, b"", {}, "timeout")
            except (OSError, _ProtocolError, ValueError) as exc:
                conn.close()
                return Upstream(
                    0, b"", {}, "protocol" if isinstance(exc, _ProtocolError) else "connect"
                )
        return Upstream(0, b"", {}, "connect")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
