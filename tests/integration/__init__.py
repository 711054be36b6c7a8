"""Home Assistant tests of custom_components/edge_inference (run from .venv-ha)."""
