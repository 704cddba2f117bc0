"""gunicorn entry point: `movierec_recommender.router.wsgi:create()` builds the router per worker."""

from __future__ import annotations

from movierec_recommender.router.app import create_app
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.web.edge import Edge, edge_of
from movierec_recommender.web.logs import configure_logging


def create() -> Edge:
    """The router from MOVIEREC_ROUTER_* settings."""
    configure_logging()
    return edge_of(create_app(RouterSettings()))
