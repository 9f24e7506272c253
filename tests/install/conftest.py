"""Fixtures for the installer tests: fake Ubuntu boxes the shell scripts run against, and `host`, which
makes a recorded machine "this machine" for the probe and for `gpudoctor install-cuda` / `install-rocm`."""

from __future__ import annotations

import pytest
from fakebox import FakeBox, amd_box, machine_box, nvidia_box


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


@pytest.fixture
def host(host, monkeypatch, tmp_path):
    """`host("rtx-4090-ubuntu")`: that recorded machine is this machine for the probe (as everywhere under
    tests/) and for the shell installers, which the CLI then runs against a fake box built from it (its
    stand-in commands only on PATH, its root as GPUDOCTOR_ROOT). Returns the box."""

    made: list[FakeBox] = []

    def use(name: str) -> FakeBox:
        host(name)
        box = machine_box(tmp_path / f"host-{len(made)}-{name}", name)
        made.append(box)
        for key, value in box.environment().items():
            monkeypatch.setenv(key, value)
        return box

    return use
