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
# HA's tools that only read: GetLiveContext, GetDateTime, HassGetWeather, todo_get_items,
# HassTimerStatus; every other tool (intents, scripts) may change something.
_READS = re.compile(r"^(Hass)?Get|_get_|Status$")
LIVE_CONTEXT = "GetLiveContext"


def is_question(text: str) -> bool:
    """Whether the user's words ask something rather than ask for something."""
    words = text.strip()
    return words.endswith(_QUESTION_MARKS) and not _REQUEST.match(words)


def only_reads(tool_name: str) -> bool:
    return bool(_READS.search(base_name(tool_name)))
