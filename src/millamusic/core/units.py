"""Conversions between units: decibels and linear amplitude."""

from __future__ import annotations

import math


def gain_to_db(gain: float) -> float:
    """20 log10 of a linear amplitude; -inf for 0 (silence) and below."""
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


def db_to_gain(db: float) -> float:
    """The linear amplitude of `db` decibels."""
    return 10.0 ** (db / 20.0)
