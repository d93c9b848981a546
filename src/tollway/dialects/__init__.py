"""Wire dialects: each translates its requests, answers, stream events and errors to and
from the gateway's one internal (OpenAI chat) shape, so the core never learns a second one."""
