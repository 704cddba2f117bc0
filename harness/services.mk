# Real services for tests (Kafka, PostgreSQL, MLflow, Prometheus, Alertmanager, Pushgateway,
# an SMTP sink, a single-node Kubernetes `cluster`). Included by the Makefile.
# Installs and builds are cached in ~/.cache/movierec; ONLY=kafka,postgres limits the set.
HARNESS ?= .venv/bin/python -m harness
HARNESS_ONLY = $(if $(ONLY),--only $(ONLY))

.PHONY: services-build services-up services-down services-status

services-build: install
	$(HARNESS) build $(HARNESS_ONLY)

services-up: install
	$(HARNESS) up $(HARNESS_ONLY)

services-down:
	@test ! -x .venv/bin/python || $(HARNESS) down

services-status:
	@$(HARNESS) status
