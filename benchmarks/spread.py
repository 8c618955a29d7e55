"""A figure over repeated runs: its median and its spread (lowest and highest)."""

from __future__ import annotations


def median_range(values: list[float]) -> tuple[float, float, float]:
    """The median (the lower middle value for an even count), the lowest and the highest."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2], ordered[0], ordered[-1]
