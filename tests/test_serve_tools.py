"""Tools and structured output through a real ``llmpick serve``, driven by real clients.

The official ``openai`` SDK and LangChain's ``ChatOpenAI`` talk to the gateway on
127.0.0.1 serving the bundled SmolLM2 (grammar-constrained decoding, batching
slots as ``serve`` opens local models), a llama.cpp server upstream for
pass-through, and an upstream declared without structured output (a 400).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from conftest import free_port, start_gateway, start_llama_server, stop

pytestmark = [pytest.mark.slow, pytest.mark.network]

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days"],
}
TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}, "format24": {"type": "boolean"}},
    "required": ["timezone"],
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER,
                                      "description": "Weather forecast for a city"}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME,
                                      "description": "The current time in a timezone"}},
]  # fmt: skip
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
PROMPTS = [
    "What's the weather in Paris for the next 3 days?",
    "What time is it in Tokyo?",
    "Will it rain in London tomorrow?",
    "Tell me the time in New York, 24-hour format please.",
    "Forecast for Berlin this week in fahrenheit.",
    "Is it sunny in Madrid?",
    "What's the local time in Sydney?",
    "I am going to Rome for 5 days, what weather should I expect?",
    "Current time in UTC?",
    "Weather in São Paulo for 2 days, celsius.",
    "What time is it in Europe/Paris?",
    "How cold will Oslo be over the next 7 days?",
    "Give me the time in India.",
    'Weather for the city called "Quebec" please.',
    "Check the forecast for Nairobi, one day.",
    "What hour is it in Los Angeles right now?",
    "Do I need an umbrella in Seattle for the next 4 days?",
    "Time in Moscow?",
    "Weather report: Cairo, 6 days, fahrenheit.",
    "What is the time in Buenos Aires, 12-hour clock?",
]
ANSWER = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "maxLength": 24},
                "zip": {"type": "string", "maxLength": 10},
            },
            "required": ["street"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "tags", "address"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def upstream(smollm2_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI server on loopback: the pass-through target."""
    proc, url = start_llama_server(smollm2_path)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, upstream: str
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("tools")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # never reached: refused before sending
    config = {
        "models": {
            "local": {"backend": "llamacpp", "model": str(smollm2_path)},
            "upstream": {"backend": "openai", "model": "smollm2", "base_url": upstream},
            "plain": {"backend": "openai", "model": "m", "base_url": dead,
                      "options": {"structured_output": False}},
        },
        "serve": {"models": ["local", "upstream", "plain"]},
    }  # fmt: skip
    proc, url = start_gateway(workdir, config, "--db", "gw.db")
    yield url
    assert stop(proc) == 0


@pytest.fixture(scope="module")
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="none", max_retries=0)


def _check_calls(calls: list[Any]) -> None:
    assert calls, "no tool call"
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_calls_validate_on_every_prompt_streamed_and_not(client: openai.OpenAI) -> None:
    with ThreadPoolExecutor(4) as pool:  # the gateway batches them (serve's slots)
        list(pool.map(lambda item: _ask_both_ways(client, *item), enumerate(PROMPTS)))


def _ask_both_ways(client: openai.OpenAI, i: int, prompt: str) -> None:
    if True:
        kwargs: dict[str, Any] = {
            "model": "local",
            "messages": [{"role": "user", "content": prompt}],
            "tools": TOOLS,
            "tool_choice": "required",
            "temperature": 0.8,
            "seed": i,
            "max_tokens": 96,
        }
        done = client.chat.completions.create(**kwargs)
        choice = done.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        _check_calls(choice.message.tool_calls or [])
        deltas: dict[int, dict[str, str]] = {}
        finish = None
        for event in client.chat.completions.create(**kwargs, stream=True):
            for c in event.choices:
                finish = c.finish_reason or finish
                for d in c.delta.tool_calls or []:
                    slot = deltas.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += d.id or ""
                    slot["name"] += (d.function.name or "") if d.function else ""
                    slot["arguments"] += (d.function.arguments or "") if d.function else ""
        assert finish == "tool_calls"
        assert deltas
        for call in deltas.values():
            jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])


def test_auto_named_and_parallel_choices(client: openai.OpenAI) -> None:
    named = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": PROMPTS[0]}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=96,
    )
    calls = named.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    _check_calls(calls)
    for seed in range(4):  # auto: a call (well formed) or a text answer, never a broken call
        auto = client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": PROMPTS[seed]}],
            tools=TOOLS, seed=seed, temperature=0.8, max_tokens=64,
        )  # fmt: skip
        message = auto.choices[0].message
        if message.tool_calls:
            _check_calls(message.tool_calls)
        else:
            assert message.content and "<tool_call>" not in message.content
    none = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Say hi."}],
        tools=TOOLS, tool_choice="none", max_tokens=16,
    )  # fmt: skip
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_a_tool_result_goes_back_and_the_model_answers(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris for 2 days?"}]
    first = client.chat.completions.create(
        model="local", messages=messages, tools=TOOLS, tool_choice="required", max_tokens=96
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'})
    final = client.chat.completions.create(
        model="local", messages=messages, tools=TOOLS, tool_choice="none", max_tokens=48
    )
    assert final.choices[0].message.content
    assert final.choices[0].finish_reason in ("stop", "length")


def test_json_schema_answers_always_validate(client: openai.OpenAI) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": ANSWER, "strict": True},
    }
    for seed in range(10):
        done = client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": f"Invent person number {seed}."}],
            response_format=fmt, seed=seed, temperature=1.0, max_tokens=400,
        )  # fmt: skip
        assert done.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(done.choices[0].message.content or ""), ANSWER)
    text, finish = "", None
    ask = 'Answer in JSON: {"animal": "cat", "legs": 4}'  # short enough to finish greedily
    for event in client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": ask}],
        response_format={"type": "json_object"}, max_tokens=400, stream=True,
        temperature=0.0, seed=0,
    ):  # fmt: skip
        text += "".join(c.delta.content or "" for c in event.choices)
        finish = next((c.finish_reason for c in event.choices if c.finish_reason), None) or finish
    assert finish == "stop", text  # a cut answer is a prefix; a finished one parses
    assert isinstance(json.loads(text), dict)


def test_refusals_are_openai_shaped_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="plain", messages=[{"role": "user", "content": "hi"}], tools=TOOLS
        )
    assert refused.value.body["param"] == "tools"  # type: ignore[index]
    assert refused.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    strict_bounds = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}}
    with pytest.raises(openai.BadRequestError, match="minimum"):
        client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": strict_bounds, "strict": True}},
        )  # fmt: skip
    broken = [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]
    with pytest.raises(openai.BadRequestError, match="not valid JSON Schema"):  # was a 500
        client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "hi"}],
            tools=broken,  # type: ignore[arg-type]
        )
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )  # fmt: skip


def test_pass_through_keeps_the_upstreams_tool_calls(client: openai.OpenAI, upstream: str) -> None:
    direct = openai.OpenAI(base_url=upstream, api_key="none", max_retries=0)
    kwargs: dict[str, Any] = {
        "messages": [{"role": "user", "content": PROMPTS[0]}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.0,
        "max_tokens": 64,
    }
    theirs = direct.chat.completions.create(model="smollm2", **kwargs).choices[0].message
    ours = client.chat.completions.create(model="upstream", **kwargs).choices[0].message
    assert theirs.tool_calls and ours.tool_calls
    assert [(c.function.name, c.function.arguments) for c in ours.tool_calls] == [
        (c.function.name, c.function.arguments) for c in theirs.tool_calls
    ]
    assert ours.tool_calls[0].id.startswith("call_")


def test_langchain_agent_loop_and_structured_output(gateway: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str, days: int) -> str:
        """Weather forecast for a city over some days."""
        return f"{city}: sunny for {days} days"

    llm = ChatOpenAI(
        model="local", base_url=f"{gateway}/v1", api_key="none", max_tokens=96, temperature=0
    )
    agent = llm.bind_tools([get_weather], tool_choice="get_weather")
    history: list[Any] = [HumanMessage("What's the weather in Lyon for 3 days?")]
    reply = agent.invoke(history)
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    history.append(reply)
    for call in reply.tool_calls:
        history.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    final = llm.bind_tools([get_weather], tool_choice="none").invoke(history)
    assert isinstance(final.content, str) and final.content
    person = llm.with_structured_output(ANSWER | {"title": "person", "description": "a person"})
    result = person.invoke("Invent a person.")
    jsonschema.validate(result, ANSWER)


def test_the_schema_documents_tools(gateway: str) -> None:
    import httpx

    doc = httpx.get(f"{gateway}/openapi.json").json()
    props = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for field in ("tools", "tool_choice", "response_format", "parallel_tool_calls"):
        assert field in props
