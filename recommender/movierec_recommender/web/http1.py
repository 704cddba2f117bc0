"""Is a complete HTTP/1.1 request in this buffer? Pure, so the worker's event loop can read
requests without a thread, and a stalled client costs only its buffer and a timer."""

from __future__ import annotations

from dataclasses import dataclass

HEAD = "head"  # the headers are not all in yet
BODY = "body"  # headers in, the body is not
COMPLETE = "complete"
ERROR = "error"


@dataclass(frozen=True)
class Scan:
    state: str
    end: int = 0  # where the first request ends (COMPLETE)
    status: int = 0  # what to answer (ERROR)
    reusable: bool = False  # exactly one bodyless HTTP/1.1 GET/HEAD that does not ask to close
    head_only: bool = False  # a HEAD request: an answer to it has no body
    plain: bool = False  # a bodyless GET or HEAD: the worker's fast path may answer it
    keep: bool = False  # plain, HTTP/1.1 and not asking to close: the connection may stay open
    # of a plain request, what the worker's fast path needs (it skips gunicorn's parser)
    target: str = ""
    accept: str | None = None
    forwarded_for: str | None = None


def scan_request(
    buf: bytes | bytearray,
    max_head: int,
    max_body: int,
    *,
    max_line: int = 1024,
    max_fields: int = 50,
    max_field: int = 4096,
) -> Scan:
    """Where the first request in `buf` stands; ERROR with 400, 411, 413, 414 or 431 for one
    the services refuse before the app (too big, malformed, unparseable length, chunked body).
    The limits are gunicorn's (`limit_request_*`), so a request is judged the same whichever
    way the worker answers it."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return Scan(ERROR, status=431) if len(buf) > max_head else Scan(HEAD)
    if end + 4 > max_head:
        return Scan(ERROR, status=431)
    lines = bytes(buf[:end]).split(b"\r\n")
    if len(lines[0]) > max_line:
        return Scan(ERROR, status=414)
    if len(lines) - 1 > max_fields:
        return Scan(ERROR, status=431)
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return Scan(ERROR, status=400)
    method, version = parts[0], parts[2]
    length: int | None = None
    close = False
    accept: bytes | None = None
    forwarded: list[bytes] = []
    for line in lines[1:]:
        if len(line) > max_field:
            return Scan(ERROR, status=431)
        name, sep, value = line.partition(b":")
        if not sep or not name or b" " in name or b"\t" in name:
            return Scan(ERROR, status=400)
        key = name.strip().lower()
        if key == b"content-length":
            text = value.strip()
            if not text.isdigit() or (length is not None and int(text) != length):
                return Scan(ERROR, status=400)
            length = int(text)
        elif key == b"transfer-encoding":
            return Scan(ERROR, status=411)  # the API takes no streamed bodies
        elif key == b"connection" and b"close" in value.lower():
            close = True
        elif key == b"accept":
            accept = value.strip() if accept is None else accept + b"," + value.strip()
        elif key == b"x-forwarded-for":
            forwarded.append(value.strip())
    size = length or 0
    if size > max_body:
        return Scan(ERROR, status=413)
    total = end + 4 + size
    if len(buf) < total:
        return Scan(BODY)
    head_only = method == b"HEAD"
    plain = method in {b"GET", b"HEAD"} and size == 0
    if not plain:
        return Scan(COMPLETE, end=total, head_only=head_only)
    keep = version == b"HTTP/1.1" and not close
    return Scan(
        COMPLETE,
        end=total,
        reusable=keep and len(buf) == total,
        head_only=head_only,
        plain=True,
        keep=keep,
        target=parts[1].decode("latin-1"),
        accept=accept.decode("latin-1") if accept is not None else None,
        forwarded_for=b", ".join(forwarded).decode("latin-1") if forwarded else None,
    )
