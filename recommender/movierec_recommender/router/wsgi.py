"""gunicorn entry point: `movierec_recommender.router.wsgi:create()` builds the router per worker."""

from __future__ import annotations

from flask import Flask

from movierec_recommender.router.app import create_app
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.serving.logs import configure_logging


def create() -> Flask:
    """The router from MOVIEREC_ROUTER_* settings."""
    configure_logging()
    return create_app(RouterSettings())
