"""The chat-log loop shared by the conversation and AI Task entities.

HA's chat log in, OpenAI chat completions out (through the server's /v1 proxy, streamed), HA's
tools in OpenAI's format, tool results fed back until none is left unanswered (at most
MAX_TOOL_ITERATIONS rounds). Two things make small local models dependable:
- the system prompt stays the same from turn to turn (the clock HA writes into it moves to the
  user's message), so llama-server reuses its cached prompt and answers sooner;
- a call the model writes as text, or with arguments that do not fit, is recovered
  (tool_recovery.py) instead of being spoken to the user.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import probatio
from homeassistant.components import conversation
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import llm, translation
from homeassistant.helpers.entity import Entity

from .call_targets import (
    TARGET_SLOTS,
    fit_targets,
    has_target,
    retarget_set_value,
    tool_call_schema,
    unknown_targets,
)
from .client import CannotConnect, EdgeInferenceClient, InvalidAuth, RequestError, Unavailable
from .const import (
    CONF_CHAT_MODEL,
    CONF_MAX_HISTORY,
    CONF_TEMPERATURE,
    DEFAULT_MAX_HISTORY,
    DEFAULT_TEMPERATURE,
    DOMAIN,
    LOGGER,
    MAX_TOOL_ITERATIONS,
    PRIORITY_VOICE,
)
from .home_vocabulary import HomeVocabulary, async_home_vocabulary
from .question_guard import LIVE_CONTEXT, base_language, is_question, only_reads
from .tool_recovery import (
    CallInProse,
    TextToolCall,
    base_name,
    calls_in_answer,
    loads_repaired,
    may_be_tool_text,
    offered_tool,
    parse_tool_text,
    result_read_back,
)

if TYPE_CHECKING:
    from .models import EdgeInferenceConfigEntry

# What HA appends to the system prompt when no date/time tool is offered (llm.DATE_TIME_PROMPT).
_CLOCK = re.compile(r"Current time is [^\n]*?\. Today's date is [^\n]*?\.\n?")
DONE = "Done."
COULD_NOT = "Sorry, I could not work out how to do that."
# Their translation keys (strings.json, under "exceptions": HA loads that category by key).
DONE_KEY = "turn_done"
COULD_NOT_KEY = "turn_could_not"
ANSWER_INSTRUCTION = (
    "Answer the user's question in one short sentence from the tool results above. "
    "Do not call a tool."
)
RETRY_INSTRUCTION = (
    "Answer with the one tool call that does what the user asked, as JSON with the tool's "
    "name and its arguments."
)


@dataclass(frozen=True)
class Toolbox:
    """The tools of one chat: HA's, as OpenAI tools, and what the home can name."""

    by_name: dict[str, llm.Tool] = field(default_factory=dict)
    formatted: list[dict[str, Any]] = field(default_factory=list)
    home: HomeVocabulary = field(default_factory=lambda: HomeVocabulary((), (), ()))

    @property
    def known(self) -> dict[str, Sequence[str]]:
        """The names each target slot may take."""
        return {slot: self.home.values(slot) for slot in TARGET_SLOTS}

    def usable(self, written: Iterable[TextToolCall]) -> tuple[list[llm.ToolInput], bool]:
        """The calls that can be made as they are (mended), and whether any could not."""
        made = [self.call(call) for call in written]
        return [call for call in made if call is not None], None in made

    def answering(self, calls: list[llm.ToolInput]) -> list[llm.ToolInput]:
        """For a question: the calls that only read, and in place of those that would act,
        the live context to answer from (once), where the agent has that tool."""
        reads = [call for call in calls if only_reads(call.tool_name)]
        if len(reads) < len(calls):
            LOGGER.debug("A question is answered, not acted on: %s", calls)
            live = next((name for name in self.by_name if base_name(name) == LIVE_CONTEXT), None)
            if live is not None and all(call.tool_name != live for call in reads):
                reads.append(llm.ToolInput(tool_name=live, tool_args={}))
        return reads

    def call(self, call: TextToolCall) -> llm.ToolInput | None:
        """The call as HA's ToolInput when the tool exists, its arguments fit its schema and
        its targets name things the home has (after mending the usual slips)."""
        if not isinstance(call.arguments, dict):
            return None
        if (offered := offered_tool(call.name, set(self.by_name))) is None:
            return None
        call = TextToolCall(offered, call.arguments)
        retargeted = retarget_set_value(call, list(self.by_name), self.home)
        if retargeted is not call:
            LOGGER.debug("%s cannot set that entity; as %s", call.name, retargeted)
            call = retargeted
        tool = self.by_name.get(call.name)
        if tool is None:
            return None
        parameters: dict[str, Any] = next(
            (
                t["function"]["parameters"]
                for t in self.formatted
                if t["function"]["name"] == tool.name
            ),
            {},
        )
        arguments = fit_targets(call.arguments, parameters, self.home)
        if arguments != call.arguments:
            LOGGER.debug("%s: arguments mended to %s", call.name, arguments)
        try:
            tool.parameters(arguments)
        except probatio.Invalid:
            return None
        if unknown := unknown_targets(arguments, parameters, self.known):
            LOGGER.debug("%s names what the home does not have: %s", call.name, unknown)
            return None
        if not has_target(arguments, parameters):
            LOGGER.debug("%s names nothing to act on", call.name)
            return None
        return llm.ToolInput(tool_name=call.name, tool_args=arguments)


def format_tool(tool: llm.Tool, serializer: Callable[[Any], Any] | None) -> dict[str, Any]:
    """One HA tool as an OpenAI function tool."""
    function: dict[str, Any] = {
        "name": tool.name,
        "parameters": probatio.to_openapi(
            tool.parameters, custom_serializer=serializer, openapi_version="3.1.0"
        ),
    }
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def chat_messages(content: list[conversation.Content], max_history: int) -> list[dict[str, Any]]:
    """The chat log as OpenAI messages: a static system prompt, the last turns, the clock."""
    messages: list[dict[str, Any]] = []
    clock = ""
    for item in content:
        if isinstance(item, conversation.SystemContent):
            clock = " ".join(m.strip() for m in _CLOCK.findall(item.content))
            messages.append({"role": "system", "content": _CLOCK.sub("", item.content).strip()})
        elif isinstance(item, conversation.UserContent):
            messages.append({"role": "user", "content": item.content})
        elif isinstance(item, conversation.AssistantContent):
            messages.append(assistant_message(item))
        elif isinstance(item, conversation.ToolResultContent):
            messages.append(tool_message(item))
    # Keep the system prompt and the last `max_history` user turns with what followed them.
    user_turns = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if len(user_turns) > max_history > 0:
        first = user_turns[-max_history]
        messages = [m for m in messages[:first] if m["role"] == "system"] + messages[first:]
    if clock and user_turns:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        message = messages[last_user]
        messages[last_user] = {**message, "content": f"{clock}\n{message['content']}"}
    return messages


def assistant_message(item: conversation.AssistantContent) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": item.content or ""}
    if item.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.tool_name, "arguments": json.dumps(call.tool_args)},
            }
            for call in item.tool_calls
        ]
    return message


def tool_message(item: conversation.ToolResultContent) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": item.tool_call_id,
        "content": json.dumps(item.result.data, default=str),
    }


def content_message(item: conversation.Content) -> dict[str, Any] | None:
    if isinstance(item, conversation.AssistantContent):
        return assistant_message(item)
    if isinstance(item, conversation.ToolResultContent):
        return tool_message(item)
    return None


class EdgeInferenceLLMEntity(Entity):
    """An LLM agent of one subentry, served by the server's LLM proxy."""

    _attr_has_entity_name = True
    _attr_name = None
    _attr_should_poll = False
    priority = PRIORITY_VOICE  # what the server's queue gives these requests

    def __init__(self, entry: EdgeInferenceConfigEntry, subentry: ConfigSubentry) -> None:
        """One device per agent subentry."""
        self.entry = entry
        self.subentry = subentry
        self._attr_unique_id = subentry.subentry_id
        self._attr_device_info = dr.DeviceInfo(
            identifiers={(DOMAIN, subentry.subentry_id)},
            name=subentry.title,
            manufacturer="Edge Inference",
            model=subentry.data.get(CONF_CHAT_MODEL),
            entry_type=dr.DeviceEntryType.SERVICE,
        )

    @property
    def client(self) -> EdgeInferenceClient:
        """The server's client."""
        return self.entry.runtime_data.client

    def request_body(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The chat completion request for this agent's settings."""
        options = self.subentry.data
        body: dict[str, Any] = {
            "model": options[CONF_CHAT_MODEL],
            "messages": messages,
            "temperature": float(options.get(CONF_TEMPERATURE, DEFAULT_TEMPERATURE)),
        }
        if tools:
            body["tools"] = tools
        return body

    async def _async_handle_chat_log(
        self,
        chat_log: conversation.ChatLog,
        structure_name: str | None = None,
        structure: probatio.Schema | None = None,
        language: str | None = None,
    ) -> None:
        """Answer the chat log, running tools until none is left unanswered."""
        llm_api = chat_log.llm_api
        toolbox = Toolbox()
        serializer = llm_api.custom_serializer if llm_api else None
        if llm_api is not None:
            by_name = {tool.name: tool for tool in llm_api.tools}
            vocabulary = async_home_vocabulary(
                self.hass, llm_api.llm_context.assistant or conversation.DOMAIN
            )
            toolbox = Toolbox(
                by_name=by_name,
                formatted=[format_tool(tool, serializer) for tool in by_name.values()],
                home=vocabulary,
            )
        max_history = int(self.subentry.data.get(CONF_MAX_HISTORY, DEFAULT_MAX_HISTORY))
        messages = chat_messages(chat_log.content, max_history)
        body = self.request_body(messages, toolbox.formatted)
        if structure is not None:
            schema = probatio.to_openapi(
                structure, custom_serializer=serializer, openapi_version="3.1.0"
            )
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": structure_name or "data", "schema": schema},
            }
        users = [c for c in chat_log.content if isinstance(c, conversation.UserContent)]
        asked = users[-1].content if users else ""
        language = language or self.hass.config.language
        replies = await async_turn_replies(self.hass, language)
        done = TurnCalls(replies, is_question(asked, language))
        for _iteration in range(MAX_TOOL_ITERATIONS):
            with translate_errors():
                async for item in chat_log.async_add_delta_content_stream(
                    self.entity_id, self._deltas(done.request(body), toolbox, done)
                ):
                    if (message := content_message(item)) is not None:
                        messages.append(message)
                    if isinstance(item, conversation.ToolResultContent):
                        done.finished(item)
            if not chat_log.unresponded_tool_results:
                break

    async def _deltas(
        self, body: dict[str, Any], toolbox: Toolbox, done: TurnCalls
    ) -> AsyncGenerator[conversation.AssistantContentDeltaDict]:
        """The streamed answer as chat-log deltas; calls only once they are known to be good,
        and only once per turn."""
        yield {"role": "assistant"}
        held = ""  # text held back while it may still be a call written as text
        deciding = bool(toolbox.by_name)
        prose = CallInProse()
        native: dict[int, dict[str, str]] = {}
        async for event in self.client.async_chat_stream(body, priority=self.priority):
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or ():
                    part = native.setdefault(
                        int(call.get("index", len(native))), {"id": "", "name": "", "args": ""}
                    )
                    function = call.get("function") or {}
                    part["id"] = call.get("id") or part["id"]
                    part["name"] += function.get("name") or ""
                    part["args"] += function.get("arguments") or ""
                if not (text := delta.get("content")):
                    continue
                if not toolbox.by_name:
                    yield {"content": text}
                    continue
                if not deciding:
                    if said := prose.feed(text):
                        yield {"content": said}
                    continue
                held += text
                if not may_be_tool_text(held):
                    deciding = False
                    if said := prose.feed(held):
                        yield {"content": said}
                    held = ""
        calls, broken = toolbox.usable(
            TextToolCall(p["name"], loads_repaired(p["args"]) if p["args"].strip() else {})
            for p in native.values()
        )
        rest, tail = prose.finish()
        if rest:
            yield {"content": rest}
        if tail:
            in_prose = calls_in_answer(tail, set(toolbox.by_name))
            if in_prose is None:
                yield {"content": tail}
            else:
                LOGGER.debug("Recovered tool calls written after prose: %s", tail)
                more, failed = toolbox.usable(in_prose)
                calls, broken = calls + more, broken or failed
        if held:
            written = calls_in_answer(held, set(toolbox.by_name))
            if written is None and done.echoed(held, body):
                # Small models read the tool's result back as JSON: say what it means.
                yield {"content": done.reply(done.all_carried_out())}
            elif written is None:
                yield {"content": held}  # JSON-looking text that is no call: say it
            else:
                LOGGER.debug("Recovered tool calls written as text: %s", held)
                more, failed = toolbox.usable(written)
                calls, broken = calls + more, broken or failed
        if broken and not calls:
            if (call := await self._constrained_call(body, toolbox)) is not None:
                calls.append(call)
            else:
                yield {"content": done.reply(False)}
        if done.question and calls:
            calls = toolbox.answering(calls)
            if not calls:
                yield {"content": done.reply(False)}  # nothing to answer from
        fresh = [call for call in calls if not done.made(call)]
        if calls and not fresh:
            # Small models ask again for what they just did, on and on: the turn is over.
            LOGGER.debug("The model repeated calls already made this turn: %s", calls)
            carried_out = all(done.carried_out(call) for call in calls)
            yield {"content": done.reply(carried_out)}
        elif fresh:
            for call in fresh:
                done.add(call)
            yield {"tool_calls": fresh}

    async def _constrained_call(
        self, body: dict[str, Any], toolbox: Toolbox
    ) -> llm.ToolInput | None:
        """Ask again, with the answer held to a valid call (of the home's names) by a JSON
        schema grammar."""
        retry = {
            k: v for k, v in body.items() if k not in ("tools", "tool_choice", "response_format")
        }
        retry["messages"] = [
            *body["messages"],
            {"role": "system", "content": RETRY_INSTRUCTION},
        ]
        retry["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "tool_call",
                "schema": tool_call_schema(toolbox.formatted, toolbox.known),
            },
        }
        answer = await self.client.async_chat(retry, priority=self.priority)
        try:
            text = answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return None
        written = parse_tool_text(text, set(toolbox.by_name))
        if not written:
            return None
        LOGGER.debug("Repaired a tool call with a constrained retry: %s", text)
        return toolbox.call(written[0])


@dataclass(frozen=True)
class TurnReplies:
    """What the agent says itself when the model's answer cannot be spoken (its calls' result
    read back as JSON, or a call it could not make), in the user's language."""

    done: str = DONE
    could_not: str = COULD_NOT


async def async_turn_replies(hass: HomeAssistant, language: str | None) -> TurnReplies:
    """The replies in `language` ("de", "de-CH"; HA's language when None), English where
    the integration has no translation."""
    base = base_language(language or hass.config.language)
    strings = await translation.async_get_translations(hass, base, "exceptions", [DOMAIN])
    prefix = f"component.{DOMAIN}.exceptions."
    return TurnReplies(
        done=strings.get(f"{prefix}{DONE_KEY}.message", DONE),
        could_not=strings.get(f"{prefix}{COULD_NOT_KEY}.message", COULD_NOT),
    )


@dataclass
class TurnCalls:
    """The calls made in one turn, and whether HA carried each out."""

    replies: TurnReplies = field(default_factory=TurnReplies)
    question: bool = False  # the user asked something: answered, never acted on
    _by_id: dict[str, str] = field(default_factory=dict)  # call id -> the call's key
    _ok: dict[str, bool] = field(default_factory=dict)  # the call's key -> carried out

    def add(self, call: llm.ToolInput) -> None:
        self._by_id[call.id] = _call_key(call)

    def made(self, call: llm.ToolInput) -> bool:
        return _call_key(call) in self._by_id.values()

    def carried_out(self, call: llm.ToolInput) -> bool:
        return self._ok.get(_call_key(call), False)

    def all_carried_out(self) -> bool:
        return bool(self._ok) and all(self._ok.values())

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The next request of the turn: once a question's states are read, the model is
        asked to answer from them without tools (small models otherwise call again)."""
        if not (self.question and self._by_id):
            return body
        answer = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
        answer["messages"] = [*body["messages"], {"role": "system", "content": ANSWER_INSTRUCTION}]
        return answer

    def reply(self, carried_out: bool) -> str:
        """What to say when the model's answer cannot be: "Done." never answers a question."""
        return self.replies.done if carried_out and not self.question else self.replies.could_not

    def echoed(self, text: str, body: dict[str, Any]) -> bool:
        """Whether an answer is JSON after calls this turn (their result read back), where no
        JSON was asked for (AI Task's structured answers are JSON on purpose)."""
        if "response_format" in body or not self._ok:
            return False
        return result_read_back(text)

    def finished(self, result: conversation.ToolResultContent) -> None:
        if (key := self._by_id.get(result.tool_call_id)) is not None:
            self._ok[key] = not result.result.error and _succeeded(result.result.data)


def _call_key(call: llm.ToolInput) -> str:
    return json.dumps([call.tool_name, call.tool_args], sort_keys=True, default=str)


def _succeeded(result: Any) -> bool:
    """Whether a tool's result says it acted: no error, and not only failed targets."""
    if not isinstance(result, dict) or result.get("error"):
        return False
    data = result.get("data")
    return not (isinstance(data, dict) and data.get("failed") and not data.get("success"))


@contextmanager
def translate_errors() -> Iterator[None]:
    """The client's errors as HomeAssistantError with a translated message."""
    try:
        yield
    except Unavailable as err:  # before CannotConnect: it is one
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="llm_unavailable",
            translation_placeholders={"message": err.message},
        ) from err
    except InvalidAuth as err:
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="invalid_auth") from err
    except RequestError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="llm_rejected",
            translation_placeholders={"message": err.message},
        ) from err
    except CannotConnect as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
