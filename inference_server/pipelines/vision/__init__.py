"""Vision pipeline: decode, letterbox, run a YOLO-family detector, decode its output, NMS."""

from .detector import Detection, DetectionResult, VisionPipeline

__all__ = ["Detection", "DetectionResult", "VisionPipeline"]
