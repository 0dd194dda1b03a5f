"""Shared fixtures for protocol tests: deterministic identities and a fixed clock."""

from __future__ import annotations

import pytest

from protocol.identity import Identity

NOW = 1_750_000_000_000  # a fixed "now" in ms; tests never read the wall clock


@pytest.fixture
def alice() -> Identity:
    return Identity.from_seed(bytes(32))


@pytest.fixture
def bob() -> Identity:
    return Identity.from_seed(bytes(31) + b"\x01")
