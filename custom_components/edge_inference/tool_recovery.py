"""Tool calls that small models write as text, turned back into tool calls.

Small local models often answer a request to act with the call written out, in one of the
shapes their training used, instead of a native tool call:

    {"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}
    <tool_call>{"name": "HassTurnOn", "parameters": {...}}</tool_call>
    ```json [{"function": {"name": "HassTurnOn", "arguments": "{...}"}}] ```

`parse_tool_text` finds such calls (after a light repair of the JSON) for the tools offered,
`calls_in_answer` and `CallInProse` find one written after prose ("To turn on the light, use:
```json ...```"), and `result_read_back` tells a tool's result copied into the answer. What
the calls name in the home is checked and mended in call_targets.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.S)
_TAGGED = re.compile(r"<(?:tool_call|function_call|tools?)>\s*(.*?)\s*(?:</[a-z_]+>|$)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_CALL_MARKERS = ("```", "{", "<tool_call>")
_MAX_CUTS = 8  # items dropped from the end of a cut-off answer, at most
_PREFIXES = ("{", "[", "<tool_call>", "<function_call>", "<tool>", "```")


@dataclass(frozen=True)
class TextToolCall:
    """A call found in the text: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]


def may_be_tool_text(text: str) -> bool:
    """Whether an answer that starts so might be a call written as text (hold it back)."""
    start = text.lstrip()
    return any(start.startswith(p) or p.startswith(start) for p in _PREFIXES) if start else False


def parse_tool_text(text: str, tool_names: set[str]) -> list[TextToolCall] | None:
    """The calls written in `text`, or None when it is not (only) calls to offered tools."""
    body = text.strip()
    if fenced := _FENCE.match(body):
        body = fenced.group(1)
    tagged = _TAGGED.findall(body)
    chunks = tagged if tagged else [body]
    calls: list[TextToolCall] = []
    for chunk in chunks:
        value = loads_repaired(chunk)
        if value is None:
            return None
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, tool_names)
            if call is None:
                return None
            calls.append(call)
    return calls or None


def calls_in_answer(text: str, tool_names: set[str]) -> list[TextToolCall] | None:
    """The calls written from the start of `text` (a code fence, a JSON object or <tool_call>
    tags), whatever prose follows them; None when there are none."""
    body = text.strip()
    if body.startswith("```"):
        end = body.find("```", 3)
        return parse_tool_text(body[: end + 3] if end > 0 else body, tool_names)
    if body.startswith("{"):
        try:  # the first whole object; what follows it is prose
            value, _end = json.JSONDecoder().raw_decode(body)
        except ValueError:  # not whole: cut off, or slips to repair
            return parse_tool_text(body, tool_names)
        return parse_tool_text(json.dumps(value), tool_names)
    return parse_tool_text(body, tool_names)


class CallInProse:
    """Streams an answer's prose, holding it back from where a call may be written (a code
    fence, a brace, a <tool_call> tag) to its end: bigger small models explain first ("To turn
    on the bed light, use this command:") and write the call after."""

    def __init__(self) -> None:
        self._pending = ""  # what may be the start of a marker
        self._tail: str | None = None

    def feed(self, text: str) -> str:
        """The text that may be said now."""
        if self._tail is not None:
            self._tail += text
            return ""
        self._pending += text
        starts = [i for m in _CALL_MARKERS if (i := self._pending.find(m)) >= 0]
        if starts:
            at = min(starts)
            out, self._tail, self._pending = self._pending[:at], self._pending[at:], ""
            return out
        keep = max(
            (k for m in _CALL_MARKERS for k in range(1, len(m)) if self._pending.endswith(m[:k])),
            default=0,
        )
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def finish(self) -> tuple[str, str]:
        """What is left to say, and the held part from a marker on ("" when none came)."""
        return self._pending, self._tail or ""


def loads_repaired(text: str) -> Any:
    """json.loads, after the usual slips of a small model: trailing commas, Python literals,
    unclosed brackets at the end, an answer cut off by the token limit (what came before the
    last complete item is kept). None when still not JSON."""
    text = text.strip()
    candidates = [text, _repair(text)]
    cut = text
    for _ in range(_MAX_CUTS):
        if (comma := cut.rfind(",")) <= 0:
            break
        cut = cut[:comma]
        candidates.append(_repair(cut))
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def result_read_back(text: str) -> bool:
    """Whether an answer that follows tool results is JSON (the result copied out, often with
    the call again before it) or a copied <tool_response>: nothing to say to a person."""
    return text.lstrip().startswith(("{", "[", "<tool_response>"))


def _as_call(item: Any, tool_names: set[str]) -> TextToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI's own shape, written out
        item = item["function"]
    name = offered_tool(item.get("name") or item.get("tool") or item.get("tool_name"), tool_names)
    if name is None:
        return None
    arguments = item.get("arguments", item.get("parameters", item.get("args", {})))
    if isinstance(arguments, str):
        arguments = loads_repaired(arguments) if arguments.strip() else {}
    if not isinstance(arguments, dict):
        return None
    return TextToolCall(name, arguments)


def base_name(tool_name: str) -> str:
    """The tool's own name (the intent), without the "<api>__" prefix HA 2026.10 adds."""
    return tool_name.rsplit("__", 1)[-1]


def offered_tool(name: Any, tool_names: set[str]) -> str | None:
    """The offered tool a call names: as written, or the one tool with that intent when the
    model got HA's "<api>__" prefix wrong or left it out ("intent__HassClimateSetTemperature"
    for "climate__HassClimateSetTemperature")."""
    if not isinstance(name, str) or name in tool_names:
        return name if isinstance(name, str) else None
    intent = base_name(name)
    same = [tool for tool in tool_names if base_name(tool) == intent]
    return same[0] if len(same) == 1 else None


def _repair(text: str) -> str:
    text = _TRAILING_COMMA.sub(r"\1", text)
    text = re.sub(r"\bTrue\b", "true", text)
    text = re.sub(r"\bFalse\b", "false", text)
    text = re.sub(r"\bNone\b", "null", text)
    # Close what the model left open (it often stops right before the last brace).
    closers = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
    if in_string:
        text += '"'
    return _TRAILING_COMMA.sub(r"\1", text + "".join(reversed(closers)))
