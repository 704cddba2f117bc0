"""The recommender service's Flask application factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask
from prometheus_client import CollectorRegistry

from movierec_recommender.provenance import ProvenanceSink
from movierec_recommender.serving.admission import InFlight
from movierec_recommender.serving.answer import Answerer
from movierec_recommender.serving.holder import Loader, ModelHolder
from movierec_recommender.serving.http import RecommendFastPath, install_common
from movierec_recommender.serving.metrics import ServingMetrics
from movierec_recommender.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """What the routes need, kept in `app.extensions["movierec"]`."""

    settings: ServingSettings
    registry: CollectorRegistry
    metrics: ServingMetrics
    holder: ModelHolder
    answerer: Answerer
    in_flight: InFlight
    provenance: ProvenanceSink


def create_app(
    settings: ServingSettings | None = None,
    *,
    loader: Loader | None = None,
    start: bool = True,
) -> Flask:
    """The recommender app. The model loads in the background: /readyz says 503 until it is in.

    `loader` replaces the folder/MLflow loader (tests); `start=False` leaves loading to the caller.
    """
    settings = settings or ServingSettings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096
    registry = CollectorRegistry(auto_describe=True)
    metrics = ServingMetrics(registry)
    holder = ModelHolder(settings, metrics, loader=loader)
    state = ServingState(
        settings=settings,
        registry=registry,
        metrics=metrics,
        holder=holder,
        answerer=Answerer(
            settings.n, settings.compute_threads, settings.compute_queue_max, settings.cache_size
        ),
        in_flight=InFlight(settings.max_in_flight),
        provenance=ProvenanceSink(
            settings.kafka_bootstrap,
            settings.provenance_topic,
            registry,
            buffer_size=settings.provenance_buffer,
            log_topic=settings.provenance_log_topic,
            server_name=settings.server_name,
        ),
    )
    app.extensions["movierec"] = state
    install_common(app)

    from movierec_recommender.serving.api import bp, wsgi_answer

    app.register_blueprint(bp)
    app.wsgi_app = RecommendFastPath(app.wsgi_app, wsgi_answer(state))  # type: ignore[method-assign]
    if start:
        holder.start()
    return app
