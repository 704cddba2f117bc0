"""The metadata API contract: user and movie records as JSON, 404 for unknown, 400 for malformed."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from movierec_simulator.api import create_app
from movierec_simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(50, 40, seed=2)


@pytest.fixture
def client(world: World) -> FlaskClient:
    return create_app(world).test_client()


def test_user_record(client: FlaskClient, world: World) -> None:
    uid = int(world.user_ids[7])
    resp = client.get(f"/user/{uid}")
    assert resp.status_code == 200 and resp.is_json
    body = resp.get_json()
    assert body == {
        "user_id": uid,
        "age": int(world.ages[7]),
        "occupation": world.occupations[7],
        "gender": world.genders[7],
    }


def test_movie_record(client: FlaskClient, world: World) -> None:
    movie_id = world.movie_ids[3]
    resp = client.get(f"/movie/{movie_id}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == body["movie_id"] == movie_id
    assert body["title"] == world.titles[3]
    assert body["genres"] == world.movie_genres(3) and body["genres"]
    assert body["runtime"] == int(world.runtimes[3])
    assert body["popularity"] > 0
    assert body["year"] == (int(world.years[3]) or None)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/user/999999", 404),
        ("/user/0", 404),
        ("/user/abc", 400),
        ("/user/-3", 400),
        ("/user/1.5", 400),
        (f"/user/{2**70}", 400),
        ("/movie/no+such+movie+1999", 404),
        ("/movie/The+Green+Mile", 400),
        ("/movie/a%20b", 400),
        ("/nothing/here", 404),
    ],
)
def test_unknown_and_malformed_ids_get_json_errors(
    client: FlaskClient, path: str, status: int
) -> None:
    resp = client.get(path)
    assert resp.status_code == status
    assert resp.is_json and resp.get_json()["error"]
