"""Gunicorn entry point for the metadata API: `gunicorn movierec_simulator.wsgi:app`."""

from __future__ import annotations

from movierec_simulator.api import create_app
from movierec_simulator.settings import SimulatorSettings
from movierec_simulator.world import World

_settings = SimulatorSettings()
app = create_app(World.generate(_settings.users, _settings.movies, _settings.seed))
