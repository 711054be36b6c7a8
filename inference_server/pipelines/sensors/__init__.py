"""Sensors pipeline: online anomaly detection and forecasts for numeric series."""

from .model import ModelParams
from .pipeline import SensorPipeline
from .routes import add_sensor_routes

__all__ = ["ModelParams", "SensorPipeline", "add_sensor_routes"]
