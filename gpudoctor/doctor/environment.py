"""Checks on the variables and paths that steer the GPU stack: *_VISIBLE_DEVICES, LD_LIBRARY_PATH, BNB_*_VERSION, the CUDA toolkit."""

from __future__ import annotations
