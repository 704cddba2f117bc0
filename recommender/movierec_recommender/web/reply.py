"""One reply type and the one header set every answer carries, from the app or from the worker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
NONE = "none"  # model version / track of an answer no model or track produced

_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def status_line(status: int) -> str:
    """`200 OK` for 200; `<code> Unknown` for codes without a standard phrase."""
    return _STATUS_LINES.get(status) or f"{status} Unknown"


def edge_headers(model_version: str, track: str) -> list[tuple[str, str]]:
    """The headers every answer carries (the contract's and the security ones): the only place
    that lists them, used by the app's answers, Flask's answers and the worker's own."""
    return [*SECURITY_HEADERS, ("X-Model-Version", model_version), ("X-Track", track)]


@dataclass
class Reply:
    """One answer: status, body, its own headers (Content-Type, Retry-After, ...), and the model
    version and track it came from (which `edge_headers` turns into X-Model-Version / X-Track)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    model_version: str = NONE
    track: str = NONE
    # the Content-Length to announce when it is not the body's: a HEAD answer passed on by the
    # router has no body but says what the GET's would be, as a HEAD answer should
    length: int | None = None

    def http_bytes(self, *, keep_alive: bool, head_only: bool = False) -> bytes:
        """The whole HTTP/1.1 answer as bytes, for the worker to send in one write."""
        lines = [f"HTTP/1.1 {status_line(self.status)}"]
        lines += [f"{name}: {value}" for name, value in self.wsgi_headers()]
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """Every header of the answer, Content-Length included."""
        return [
            *self.headers,
            *edge_headers(self.model_version, self.track),
            ("Content-Length", str(len(self.body) if self.length is None else self.length)),
        ]


def short_reply(
    status: int,
    message: str,
    as_json: bool,
    *,
    retry_after: str | None = None,
    model_version: str = NONE,
    track: str = NONE,
) -> Reply:
    """A short error: one plain-text line, or `{"error": ...}` when the client asked for JSON."""
    if as_json:
        body, ctype = json.dumps({"error": message}).encode(), JSON
    else:
        body, ctype = (message + "\n").encode(), TEXT
    headers = [("Content-Type", ctype)]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    return Reply(status, body, headers, model_version, track)


def raw_answer(
    status: int,
    message: str,
    *,
    model_version: str = NONE,
    track: str = NONE,
    keep_alive: bool = False,
    retry_after: str | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 answer as bytes, for what the worker answers without the app (shed,
    slow or malformed requests): the same headers as every other answer."""
    reply = short_reply(
        status, message, False, retry_after=retry_after, model_version=model_version, track=track
    )
    return reply.http_bytes(keep_alive=keep_alive, head_only=head_only)
