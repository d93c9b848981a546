"""The OpenAI Agents SDK (pinned in the dev extras), unchanged, on its default model path —
the Responses API — against the gateway: an agent with a function tool runs the tool the
model calls and answers with what the tool returned, streaming and not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from tests.clients.conftest import AGENT_MODEL, AgentGateway
from tests.support.mock_server import fetch_mock_stats
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS, words_for

WEATHER_IN = "sunny, 21 C in"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{WEATHER_IN} {city}"


@pytest.fixture
async def run_config(agent_gateway: AgentGateway) -> AsyncIterator[RunConfig]:
    async with AsyncOpenAI(
        base_url=agent_gateway.base_url, api_key=agent_gateway.key, max_retries=0
    ) as client:
        # The SDK's default provider (Responses API), given the gateway's client; tracing off,
        # so nothing is exported anywhere.
        yield RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)


def agent() -> Agent:
    return Agent(
        name="forecaster",
        instructions="Answer with the tool.",
        model=AGENT_MODEL,
        tools=[get_weather],
    )


def expected_answer(gateway: AgentGateway) -> str:
    """The mock's text answer to the tool's output (the last message it was sent)."""
    forwarded = fetch_mock_stats(gateway.mock)["last_request"]
    output = forwarded["messages"][-1]
    assert output["role"] == "tool"
    assert output["content"].startswith(WEATHER_IN)
    return " ".join(words_for(output["content"], DEFAULT_REPLY_TOKENS))


async def test_agent_runs_its_function_tool(
    agent_gateway: AgentGateway, run_config: RunConfig
) -> None:
    result = await Runner.run(agent(), "weather in Lyon?", run_config=run_config)
    model = run_config.model_provider.get_model(AGENT_MODEL)
    assert isinstance(model, OpenAIResponsesModel)  # the default path is the Responses API
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert len(calls) == len(outputs) == 1
    assert str(outputs[0].output).startswith(WEATHER_IN)
    assert result.final_output == expected_answer(agent_gateway)
    assert fetch_mock_stats(agent_gateway.mock)["requests"] == 2
    usage = result.context_wrapper.usage
    assert usage.requests == 2
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_streamed_agent_runs_its_function_tool(
    agent_gateway: AgentGateway, run_config: RunConfig
) -> None:
    streamed = Runner.run_streamed(agent(), "weather in Lyon?", run_config=run_config)
    deltas: list[str] = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
    assert streamed.final_output == expected_answer(agent_gateway)
    assert "".join(deltas) == streamed.final_output
    kinds = [item.type for item in streamed.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
