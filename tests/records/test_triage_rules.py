"""Triage vocabulary, DTMF digits, and that gateway.records stays sans-IO."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway.calls.call import CLASSIFY_DIGITS
from gateway.records import (
    CLASSIFICATIONS,
    DTMF_CLASSIFICATION,
    ROLES,
    classification_for_digit,
    parse_classification,
)

PACKAGE = Path(__file__).resolve().parents[2] / "gateway" / "records"
FORBIDDEN = {"asyncio", "socket", "time", "gateway.metrics", "gateway.store", "gateway.api", "sqlalchemy",
             "aiohttp", "os", "logging"}


def test_classifications_and_digits() -> None:
    assert set(DTMF_CLASSIFICATION.values()) == set(CLASSIFICATIONS)
    # The README's and docs/api.md's table: #1 genuine ... #3 accidental ... #7 prank.
    assert [classification_for_digit(d) for d in "1234567"] == [
        "genuine", "false", "accidental", "silent", "test", "fault", "prank"]
    assert CLASSIFY_DIGITS is DTMF_CLASSIFICATION  # the call layer keys the same table
    assert classification_for_digit("0") is None and classification_for_digit("#") is None
    assert parse_classification("fault") == "fault"
    for bad in ("Genuine", "", None, 1, "unclassified"):
        with pytest.raises(ValueError, match="must be one of genuine"):
            parse_classification(bad)
    assert ROLES == ("operator", "ops", "auditor", "admin")


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_records_package_is_pure(module: Path) -> None:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (module.name, name)
