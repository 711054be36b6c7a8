"""Speech-to-text: Whisper (faster-whisper) for whole files and live streams with VAD endpointing.

audio.py (WAV/PCM in, soxr resampling) · transcriber.py (the model and its priority queue) ·
endpointing.py (Silero VAD) · agreement.py (local agreement) · vocabulary.py (phrases → prompt) ·
stream.py (one live utterance) · pipeline.py (limits, languages) · routes.py (HTTP, WebSocket) ·
wyoming_server.py (the Wyoming protocol on its own port).
"""

from .pipeline import SpeechLimits, SpeechPipeline

__all__ = ["SpeechLimits", "SpeechPipeline"]
