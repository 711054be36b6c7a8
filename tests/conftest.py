"""Shared by both venvs: keep Home Assistant imports out (tests/integration has its own)."""
