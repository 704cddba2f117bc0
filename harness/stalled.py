"""Slow, hostile clients: connections that never finish a request, for attack tests and benchmarks."""

from __future__ import annotations

import socket
import threading

from harness.ports import HOST

SLOW_HEAD = b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\nX-Slow: "
SLOW_BODY = b"POST /recommend/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab"


class StalledClients:
    """`count` connections that never finish a request: half stop inside the headers, half
    inside the body, and each sends one more byte every half second (so an idle timeout alone
    does not end them). A connection the server closes is replaced, so the pressure stays on."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=2)
            sock.sendall(SLOW_HEAD if i % 2 == 0 else SLOW_BODY)
            sock.setblocking(False)
            self.socks[i] = sock
            self.opened += 1
        except OSError:
            self.socks[i] = None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for i, sock in enumerate(self.socks):
                if sock is None:
                    self._open(i)
                    continue
                try:
                    try:
                        if sock.recv(4096) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    sock.send(b"a")
                except OSError:
                    sock.close()
                    self._open(i)

    def __enter__(self) -> StalledClients:
        for i in range(len(self.socks)):
            self._open(i)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            if sock is not None:
                sock.close()
