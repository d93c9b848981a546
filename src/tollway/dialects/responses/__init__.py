"""OpenAI's Responses API (`POST /v1/responses`) over the gateway's chat-shaped core."""
