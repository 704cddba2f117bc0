# The one movierec image: every component is a `movierec` subcommand (serve, route, ingest,
# retrain, quality, operator) and `mlflow server` runs from the same venv. GitHub Actions builds
# it (.github/workflows/images.yml); `make images` builds the same layout without docker
# (harness/images.py): venv /opt/movierec with every extra, user 10001, HOME=/tmp.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY movierec ./movierec
COPY simulator/movierec_simulator ./simulator/movierec_simulator
COPY ingestor/movierec_ingestor ./ingestor/movierec_ingestor
COPY recommender/movierec_recommender ./recommender/movierec_recommender
COPY operator/movierec_operator ./operator/movierec_operator
RUN python -m venv /opt/movierec \
    && /opt/movierec/bin/pip install ".[all]" \
    && /opt/movierec/bin/pip list --format=freeze > /opt/movierec/requirements.lock

FROM python:3.11-slim-bookworm
COPY --from=build /opt/movierec /opt/movierec
RUN groupadd --gid 10001 movierec \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin movierec
ENV PATH=/opt/movierec/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    LANG=C.UTF-8
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["movierec"]
