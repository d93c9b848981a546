"""Anthropic's Messages API (`POST /v1/messages`) over the gateway's OpenAI-shaped core."""
