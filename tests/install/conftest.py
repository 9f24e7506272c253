"""Fixtures for the installer tests: fake Ubuntu boxes the shell scripts run against."""

from __future__ import annotations

import pytest
from fakebox import FakeBox, amd_box, nvidia_box


@pytest.fixture
def box(tmp_path) -> FakeBox:
    """An Ubuntu 24.04 box with no GPU and nothing installed."""
    return FakeBox(tmp_path / "box")


@pytest.fixture
def nvidia(tmp_path) -> FakeBox:
    return nvidia_box(tmp_path / "nvidia")


@pytest.fixture
def amd(tmp_path) -> FakeBox:
    return amd_box(tmp_path / "amd")
