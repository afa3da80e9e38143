"""Shared fixtures for the dialplan tests: the Sutton inventory and a YAML file writer."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from dialplan_fixtures import INVENTORY

from gateway.dialplan import Inventory


@pytest.fixture
def inventory() -> Inventory:
    """The Sutton inventory (plus one Darlington help point and a standalone position)."""
    return INVENTORY


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented YAML to ``tmp_path/name`` and return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write
