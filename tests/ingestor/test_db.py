"""The one engine factory: every database URL form reaches the same database, connects are bounded."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from movierec_ingestor.db import create_engine, normalize_url
from movierec_ingestor.errors import BadInputError


def _forms(url: str) -> list[str]:
    rest = url.split("://", 1)[1]
    return [f"postgresql+psycopg2://{rest}", f"postgresql://{rest}", f"postgres://{rest}"]


@pytest.mark.postgres
def test_every_postgresql_url_form_reaches_the_database(pg_url: str) -> None:
    for form in _forms(pg_url):
        engine = create_engine(form)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert engine.dialect.driver == "psycopg2"
        finally:
            engine.dispose()


def test_sqlite_urls_create_their_folder(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/deep/er/x.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "oracle+cx://a/b"])
def test_other_databases_are_bad_input(url: str) -> None:
    with pytest.raises(BadInputError):
        normalize_url(url)


def test_a_silent_server_fails_within_the_connect_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    engine = create_engine(f"postgresql://u:p@127.0.0.1:{port}/db", connect_timeout_s=2)
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError, match="timeout"), engine.connect():
            pass
    finally:
        engine.dispose()
        silent.close()
    assert time.monotonic() - started < 10
