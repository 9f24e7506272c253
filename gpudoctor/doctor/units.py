"""Byte counts as people read them: GiB = 1024³ bytes, as everywhere in gpudoctor."""

from __future__ import annotations

GIB = 1024**3
MIB = 1024**2


def gib(count: int | float) -> str:
    """12_884_901_888 -> '12.0 GiB'; under 1 GiB in MiB ('512 MiB')."""
    if count < GIB:
        return f"{count / MIB:.0f} MiB"
    return f"{count / GIB:.1f} GiB"
