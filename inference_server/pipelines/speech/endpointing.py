"""End of speech from the Silero VAD model that faster-whisper ships, run as audio arrives.

The ONNX model takes 512-sample windows (32 ms at 16 kHz) with 64 samples of context and an
LSTM state; feeding it window by window with the state carried over gives exactly the
probabilities of one pass over the whole recording (checked against faster-whisper's batch
call), at a fraction of a millisecond per window. The session is shared (onnxruntime sessions
are thread-safe); the state lives in each Endpointer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import get_vad_model

from .audio import WHISPER_RATE, Audio

WINDOW = 512
CONTEXT = 64
WINDOW_S = WINDOW / WHISPER_RATE


@dataclass(frozen=True)
class EndpointOptions:
    threshold: float = 0.5
    min_speech_s: float = 0.25  # this much speech before a command counts as started
    end_silence_s: float = 0.5  # silence after speech that ends the command
    early_silence_s: float = 0.2  # silence after which a final-quality decode may start


class Endpointer:
    """Feeds 16 kHz audio to the VAD and says where speech is and when it has ended."""

    def __init__(self, options: EndpointOptions | None = None) -> None:
        self.options = options or EndpointOptions()
        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.windows = 0
        self.speech_windows = 0
        self.last_speech_window = -1
        self._neg_threshold = max(self.options.threshold - 0.15, 0.01)
        self._in_speech = False

    @property
    def started(self) -> bool:
        return self.speech_windows * WINDOW_S >= self.options.min_speech_s

    @property
    def silence_s(self) -> float:
        """Seconds since the last speech window (0 while speaking or before any speech)."""
        if self.last_speech_window < 0:
            return 0.0
        return (self.windows - 1 - self.last_speech_window) * WINDOW_S

    @property
    def speech_end_s(self) -> float:
        """Where the last speech window ends, in seconds from the start of the stream."""
        return (self.last_speech_window + 1) * WINDOW_S

    @property
    def ended(self) -> bool:
        return self.started and self.silence_s >= self.options.end_silence_s

    @property
    def pausing(self) -> bool:
        return self.started and self.silence_s >= self.options.early_silence_s

    def feed(self, audio: Audio) -> None:
        data = np.concatenate([self._pending, audio]) if self._pending.size else audio
        whole = data.size - data.size % WINDOW
        self._pending = data[whole:].copy()
        if whole == 0:
            return
        windows = data[:whole].reshape(-1, WINDOW)
        contexts = np.vstack([self._context[None], windows[:-1, -CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32)
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        for prob in np.asarray(probs).ravel():
            # Hysteresis as in Silero's own segmenter: enter at threshold, leave below it - 0.15.
            if prob >= self.options.threshold or (self._in_speech and prob >= self._neg_threshold):
                self._in_speech = True
                self.speech_windows += 1
                self.last_speech_window = self.windows
            else:
                self._in_speech = False
            self.windows += 1
