"""End-to-end: a real Mosquitto, the real server subprocess and HA (run from .venv-ha)."""
