"""Decisions as pure functions of (spec, observed state, clock); no I/O here."""
