"""Checks on what the live torch check saw: kernels for this GPU, the training libraries importing, a child killed by a signal."""

from __future__ import annotations
