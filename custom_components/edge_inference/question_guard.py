"""A question is answered, never acted on.

Small models answer "Is the garage door open?" with HassTurnOn on the garage door (Qwen2.5 0.5B
did, in bench/llm_actions.py), and "What is the thermostat set to?" with a new setpoint. When
the user's words are a question, a call that would change the home is replaced by HA's
read-only live-context tool (so the model can answer from the states), or dropped where the
agent has none.
"""

from __future__ import annotations

import re

from .tool_recovery import base_name

# Polite requests are phrased as questions but ask for an action ("Can you open the blinds?"),
# in the languages the agent's own replies are translated to.
_REQUEST = re.compile(
    r"^\W*(can|could|would|will|please|may|kannst|könntest|würdest|peux|pourrais|"
    r"pouvez|pourriez|puedes|podrías|puede|podría|kun|kan|kunt|wil|zou|puoi|potresti|può|"
    r"pode|podes|poderia|czy\s+(możesz|mógłbyś|mogłabyś|możecie))\b",
    re.IGNORECASE,
)
_QUESTION_MARKS = ("?", "\uff1f", "\u061f")  # also the full-width and the Arabic one
# Speech-to-text often drops the question mark ("is the garage door open"), so a sentence that
# opens with a question word or an inverted "to be / to have" counts too, in the languages the
# agent's replies are translated to. Only words that seldom open a command are listed (a
# command taken for a question would be refused): German and Dutch commands also open with a
# verb, but not with these.
_OPENERS = {
    "en": "is|are|was|were|has|have|what|what's|whats|which|who|whose|when|where|why|how",
    "de": "ist|sind|war|waren|hat|haben|was|welche[rsnm]?|wer|wann|wo|wie|warum|wieso|weshalb",
    "fr": "est-ce|quel(le)?s?|quand|où|comment|combien|pourquoi|qui|qu'est-ce",
    "es": "qué|cuál(es)?|cuándo|dónde|cómo|cuánt[oa]s?|quién(es)?|está|están",
    "it": "è|sono|che|cosa|quale|quali|quando|dove|come|quant[oaie]|chi|perché",
    "nl": "is|zijn|was|waren|heeft|hebben|wat|welke?|wie|wanneer|waar|hoe|hoeveel|waarom",
    "pt": "que|qual|quais|quando|onde|como|quant[oa]s?|quem|está|estão",
    "pl": "czy|jaki|jaka|jakie|ile|kiedy|gdzie|jak|kto|co|dlaczego",
}
_OPENER_RE = {
    lang: re.compile(rf"^\W*({words})(?=\W|$)", re.IGNORECASE) for lang, words in _OPENERS.items()
}
_INVERTED_MARK = "\u00bf"  # Spanish opens a question with it
# HA's tools that only read: GetLiveContext, GetDateTime, HassGetWeather, todo_get_items,
# HassTimerStatus; every other tool (intents, scripts) may change something.
_READS = re.compile(r"^(Hass)?Get|_get_|Status$")
LIVE_CONTEXT = "GetLiveContext"


def base_language(language: str | None) -> str:
    """The language without its region: "de-CH" -> "de"."""
    return (language or "").split("-")[0].lower()


def is_question(text: str, language: str | None = None) -> bool:
    """Whether the user's words ask something rather than ask for something.

    `language` ("de", "de-CH"): also a sentence without a question mark that opens with one
    of that language's question words, as speech-to-text writes questions."""
    words = text.strip()
    if _REQUEST.match(words):
        return False
    if words.endswith(_QUESTION_MARKS) or words.startswith(_INVERTED_MARK):
        return True
    opener = _OPENER_RE.get(base_language(language))
    return bool(opener and opener.match(words))


def only_reads(tool_name: str) -> bool:
    return bool(_READS.search(base_name(tool_name)))
