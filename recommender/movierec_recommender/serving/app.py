"""The recommender service's Flask application factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask
from prometheus_client import CollectorRegistry

from movierec_recommender.provenance import ProvenanceSink
from movierec_recommender.serving.answer import Answerer
from movierec_recommender.serving.api import RecommenderHandler
from movierec_recommender.serving.holder import Loader, ModelHolder
from movierec_recommender.serving.metrics import ServingMetrics
from movierec_recommender.serving.settings import ServingSettings
from movierec_recommender.web import edge

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """What the routes need, kept in `app.extensions["movierec"]`."""

    settings: ServingSettings
    registry: CollectorRegistry
    metrics: ServingMetrics
    holder: ModelHolder
    answerer: Answerer
    provenance: ProvenanceSink
    handler: RecommenderHandler = field(init=False)


def create_app(
    settings: ServingSettings | None = None,
    *,
    loader: Loader | None = None,
    start: bool = True,
    provenance: ProvenanceSink | None = None,
) -> Flask:
    """The recommender app. The model loads in the background: /readyz says 503 until it is in.

    `loader` replaces the folder/MLflow loader (tests); `start=False` leaves loading to the caller;
    `provenance` replaces the Kafka sink built from the settings.
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
        provenance=provenance
        or ProvenanceSink(
            settings.kafka_bootstrap,
            settings.provenance_topic,
            registry,
            buffer_size=settings.provenance_buffer,
            log_topic=settings.provenance_log_topic,
            server_name=settings.server_name,
        ),
    )
    state.handler = RecommenderHandler(state)
    app.extensions["movierec"] = state

    from movierec_recommender.serving.api import bp

    app.register_blueprint(bp)
    edge.install(app, state.handler)
    if start:
        holder.start()
    return app
