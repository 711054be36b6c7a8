"""Local agreement (whisper_streaming's LocalAgreement-2): show only the words two consecutive
decodes of the growing audio agree on.

Whisper rewrites the end of its hypothesis as more audio arrives ("turn on the kitch" →
"turn on the kitchen lights"); a word both passes produced in the same place rarely changes
again, so it is committed, and committed words never go back. Commands are shorter than one
30 s Whisper window, so every pass decodes the audio from the start and no buffer trimming is
needed.
"""

from __future__ import annotations

import re

_WORD_CHARS = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    """Words compare without case and punctuation ("Lights." agrees with "lights")."""
    return _WORD_CHARS.sub("", word.lower())


class LocalAgreement:
    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] = []
        self.latest: list[str] = []

    def insert(self, words: list[str]) -> list[str]:
        """Add one pass's words; returns the words newly committed by it."""
        self.latest = words
        agreed = 0
        for mine, theirs in zip(words, self._previous, strict=False):
            if _key(mine) != _key(theirs):
                break
            agreed += 1
        self._previous = words
        if agreed <= len(self.committed):
            return []
        if [_key(w) for w in words[: len(self.committed)]] != [_key(w) for w in self.committed]:
            return []  # this pass rewrote committed words: keep what was shown
        new = words[len(self.committed) : agreed]
        self.committed.extend(new)
        return new

    @property
    def stable_text(self) -> str:
        return " ".join(self.committed)

    @property
    def unstable_text(self) -> str:
        """The latest pass's words after the committed ones (may still change)."""
        if [_key(w) for w in self.latest[: len(self.committed)]] != [
            _key(w) for w in self.committed
        ]:
            return ""
        return " ".join(self.latest[len(self.committed) :])
