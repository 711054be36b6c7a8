"""Vision pipeline: decode, letterbox, run a YOLO-family detector, decode its output, NMS."""

from .detector import Detection, DetectionResult, DetectOptions, VisionPipeline

__all__ = ["DetectOptions", "Detection", "DetectionResult", "VisionPipeline"]
