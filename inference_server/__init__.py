"""edge_inference server: local AI for Home Assistant, announced over MQTT."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
