from __future__ import annotations

from tollway.providers.tokens import content_text, count_prompt_tokens, count_tokens


def test_count_tokens_counts_whitespace_separated_words() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello") == 1
    assert count_tokens("  hello   big\nworld\t") == 3
    assert count_tokens("   ") == 1  # non-empty text is at least one token


def test_content_text_reads_strings_and_text_parts() -> None:
    assert content_text("hi there") == "hi there"
    parts = [
        {"type": "text", "text": "one two"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "three"},
    ]
    assert content_text(parts) == "one two three"
    assert content_text(None) == ""


def test_count_prompt_tokens_adds_three_per_message() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
        {"role": "assistant", "content": None},
    ]
    assert count_prompt_tokens(messages) == (2 + 3) + (3 + 3) + (0 + 3)
