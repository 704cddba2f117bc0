"""Ordering for the harness tests: the cluster teardown test restarts the shared node, so it runs last."""

from __future__ import annotations

import pytest

LAST = "test_cluster_teardown.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the teardown test behind every other test of the session (all directories)."""
    items.sort(key=lambda item: item.path.name == LAST)
