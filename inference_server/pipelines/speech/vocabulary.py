"""Phrases to bias towards (entity, area and floor names) → Whisper's initial prompt.

The prompt conditions the decoder on the words of this home, so "Ecobee" or "office lamp" come
out spelled as the user named them. It must stay short: Whisper cuts a prompt at 223 tokens, and
a long one makes the model echo names that were never spoken. Phrases are taken in the order the
client sends them (the integration sends areas and floors first, then entity names), de-duplicated
case-insensitively, and added whole until the token budget is reached, counted with the model's
own tokenizer (wyoming-faster-whisper 3.8 does the same with a 200-token budget).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

_LOGGER = logging.getLogger(__name__)

DEFAULT_PROMPT_TOKENS = 120
MAX_PROMPT_TOKENS = 223  # Whisper's own cap: max_length // 2 - 1
MAX_PHRASES = 1000
MAX_PHRASE_CHARS = 100


class InvalidPhrasesError(ValueError):
    """Phrases that are not a list of short strings."""


def clean_phrases(phrases: object) -> list[str]:
    """A list of distinct, whitespace-normalised phrases in the order given."""
    if phrases is None:
        return []
    if not isinstance(phrases, list) or len(phrases) > MAX_PHRASES:
        raise InvalidPhrasesError(f"phrases must be a list of at most {MAX_PHRASES} strings")
    seen: set[str] = set()
    cleaned: list[str] = []
    for phrase in phrases:
        if not isinstance(phrase, str) or len(phrase) > MAX_PHRASE_CHARS:
            raise InvalidPhrasesError(f"each phrase must be a string of at most {MAX_PHRASE_CHARS}")
        text = " ".join(phrase.split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            cleaned.append(text)
    return cleaned


@lru_cache(maxsize=4)
def _tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


class PromptBuilder:
    """Builds budgeted prompts with one model's tokenizer (no model load needed)."""

    def __init__(self, model_dir: Path, budget: int = DEFAULT_PROMPT_TOKENS) -> None:
        self.tokenizer = _tokenizer(model_dir)
        self.budget = min(budget, MAX_PROMPT_TOKENS)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def build(self, phrases: Iterable[str]) -> str | None:
        """Returns "A, B, C." with as many phrases as fit in the budget, or None without phrases.

        Whisper's byte-level BPE splits before each space and punctuation mark, so the tokens of
        ", name" add up exactly; the whole prompt is counted once more to be sure.
        """
        chosen: list[str] = []
        used = 1  # the final "."
        for phrase in phrases:
            cost = self.count((", " if chosen else " ") + phrase)
            if used + cost > self.budget:
                break
            chosen.append(phrase)
            used += cost
        while chosen and self.count(" " + ", ".join(chosen) + ".") > self.budget:
            chosen.pop()
        if not chosen:
            return None
        return ", ".join(chosen) + "."
