"""gunicorn entry point: `movierec_recommender.serving.wsgi:create()` builds the app per worker."""

from __future__ import annotations

from movierec_recommender.serving.app import create_app
from movierec_recommender.serving.settings import ServingSettings
from movierec_recommender.web.edge import Edge, edge_of
from movierec_recommender.web.logs import configure_logging


def create() -> Edge:
    """The app from MOVIEREC_RECOMMENDER_* settings (gunicorn: `...serving.wsgi:create()`)."""
    configure_logging()
    settings = ServingSettings()
    app = create_app(settings)
    # A worker starts accepting only after this returns: waiting for the first load here keeps a
    # worker that is still loading from answering 503 while its siblings are ready. Bounded, so a
    # model that cannot load leaves the worker up and reporting why on /readyz.
    app.extensions["movierec"].holder.wait_ready(settings.startup_wait_seconds)
    return edge_of(app)
