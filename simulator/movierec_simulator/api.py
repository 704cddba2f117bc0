"""The course's metadata API over a world: `GET /user/<id>` and `GET /movie/<movie_id>` as JSON."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from movierec_ingestor.events import MAX_MOVIE_ID, MAX_USER_ID, SLUG_RE

from movierec_simulator.world import World

bp = Blueprint("metadata", __name__)


def _world() -> World:
    world: World = current_app.extensions["movierec_world"]
    return world


@bp.get("/user/<raw_id>")
def user(raw_id: str) -> ResponseReturnValue:
    if not (raw_id.isascii() and raw_id.isdigit()) or int(raw_id) > MAX_USER_ID:
        return jsonify(error="user id must be a non-negative integer"), 400
    world = _world()
    idx = world.user_index(int(raw_id))
    if idx is None:
        return jsonify(error=f"no user {int(raw_id)}"), 404
    return jsonify(world.user_record(idx))


@bp.get("/movie/<raw_id>")
def movie(raw_id: str) -> ResponseReturnValue:
    if len(raw_id) > MAX_MOVIE_ID or not SLUG_RE.match(raw_id):
        return jsonify(error="movie id must be a slug such as the+green+mile+1999"), 400
    world = _world()
    idx = world.movie_index(raw_id)
    if idx is None:
        return jsonify(error=f"no movie {raw_id}"), 404
    record = world.movie_record(idx)
    return jsonify({"id": record["movie_id"], **record})


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


def create_app(world: World) -> Flask:
    """The metadata API for `world` (gunicorn: `movierec_simulator.wsgi:app`)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["movierec_world"] = world
    app.register_blueprint(bp)

    @app.errorhandler(404)
    def not_found(_: Exception) -> ResponseReturnValue:
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> ResponseReturnValue:
        return jsonify(error="method not allowed"), 405

    return app
