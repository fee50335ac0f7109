"""What `inspect` masks in a context it shows: secret-looking text by its key or its form, never counts or prose;
and what it cuts: long texts, long lists, deep values."""

from __future__ import annotations

from agentfsm.service.masking import masked_context


def test_secret_looking_values_are_masked_by_key_or_by_form() -> None:
    shown = masked_context({
        "password": "hunter2", "db_password": "x", "apiKey": "abc", "X-Auth-Token": "t", "client_secret": "s",
        "headers": {"Authorization": "Basic Zm9vOmJhcg=="}, "passwords": ["a", "b"],
        "note": "use sk-" + "x" * 24 + " for it", "github": "ghp_" + "a" * 36, "aws": "AKIA" + "B" * 16,
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc", "pem": "-----BEGIN RSA PRIVATE KEY-----\n...",
        "bearer": "Bearer abcdefghijklmnopqrstuvwxyz",
    })
    assert all(value == "[redacted]" for key, value in shown.items() if key not in ("headers", "passwords")), shown
    assert shown["headers"] == {"Authorization": "[redacted]"} and shown["passwords"] == ["[redacted]"] * 2


def test_counts_and_ordinary_words_are_kept() -> None:
    data = {"max_tokens": 512, "tokens": 40, "author": "Ada", "tokenizer": "bpe", "passage": "a passage",
            "token_count": 3, "skills": "sk-short", "empty_password": ""}
    assert masked_context(data) == data


def test_long_values_are_cut_and_counted() -> None:
    shown = masked_context({"text": "y" * 5000, "items": list(range(50)), "deep": {"a": {"b": {"c": {"d": {
        "e": {"f": {"g": 1}}}}}}}})
    assert shown["text"] == "y" * 100 + "… (5000 characters)"
    assert shown["items"] == [*range(20), "… 30 more items"]
    assert shown["deep"]["a"]["b"]["c"]["d"]["e"] == "… (1 keys)"
