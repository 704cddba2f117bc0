"""Recommender subcommands, gathered from the modules that own them (train, pipeline, serving)."""

from __future__ import annotations

import argparse
import importlib

_AREAS = (
    "movierec_recommender.cli_train",  # train, predict
    "movierec_recommender.cli_pipeline",  # retrain, promote
    "movierec_recommender.cli_serve",  # serve, route
    "movierec_recommender.cli_online",  # evaluate-online
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # area not built yet
            raise
        module.register(sub)
