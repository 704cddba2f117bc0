"""The serving fallback reads user demographics from PostgreSQL under every URL form."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from movierec_ingestor.db import create_engine, upgrade
from movierec_recommender.serving.fallback import read_users_db


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_users_load_from_postgres_for_every_url_form(pg_url: str, scheme: str) -> None:
    engine = create_engine(pg_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO users (user_id, age, gender) VALUES (7, 23, 'F'), (8, 61, 'M')")
        )
    engine.dispose()
    url = scheme + "://" + pg_url.split("://", 1)[1]

    users = read_users_db(url)

    assert set(users) == {"7", "8"}
    assert users["7"] != users["8"]
