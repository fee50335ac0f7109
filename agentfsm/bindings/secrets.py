"""Secrets for bindings: read from environment variables named in the YAML, and kept out of every message.

A binding reads its secrets once, when the run starts. Errors name the variable, never
its value; and any text a binding passes on from outside (a provider's error message, an
exception's text) goes through `Redactor.clean` first, because a server may echo what it got.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping

from agentfsm.bindings.imports import BindingError
from agentfsm.bindings.known_secrets import MIN_SECRET_LENGTH as _MIN_SECRET_LENGTH
from agentfsm.bindings.known_secrets import REDACTED, redact, register_secret
from agentfsm.spec.models import EnvValue
from agentfsm.spec.network import sends_in_clear

__all__ = ["REDACTED", "Redactor", "read_env", "read_header_env", "resolve_headers"]
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
"""What an HTTP header value may hold (printable ASCII, tabs); secrets end up in headers."""


def read_env(variable: str, where: str, hint: str = "") -> str:
    """The value of `variable`; a BindingError naming it (and `where` it is used) when it is unset or empty.

    The value is registered as a secret of the process (`known_secrets`): logs redact it.
    """
    value = os.environ.get(variable)
    if not value:
        raise BindingError(f"{where}: environment variable {variable} is not set{hint}")
    if len(value.strip()) < _MIN_SECRET_LENGTH:  # too short to take out of text without garbling it: refused
        raise BindingError(f"{where}: environment variable {variable} holds fewer than {_MIN_SECRET_LENGTH} "
                           "characters, too short to be kept out of output; a secret must be longer")
    register_secret(value)
    return value


def read_header_env(variable: str, where: str, hint: str = "") -> str:
    """`read_env` for a value sent in an HTTP header, which must be one line of printable ASCII.

    Checked here because the HTTP library's own complaint would quote the value.
    """
    value = read_env(variable, where, hint)
    if not _HEADER_VALUE.fullmatch(value):
        raise BindingError(f"{where}: environment variable {variable} holds characters an HTTP header cannot carry "
                           "(a line break, or text that is not ASCII)")
    return value


def resolve_headers(headers: Mapping[str, str | EnvValue], where: str) -> tuple[dict[str, str], list[str]]:
    """The headers with `{env: NAME}` values read; returns (headers, the values read from the environment)."""
    resolved: dict[str, str] = {}
    secrets: list[str] = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise BindingError(f"{where}.headers: {name!r} is not an HTTP header name")
        if isinstance(value, EnvValue):
            value = read_header_env(value.env, f"{where}.headers.{name}")
            secrets.append(value)
        elif not _HEADER_VALUE.fullmatch(value):
            raise BindingError(f"{where}.headers.{name}: an HTTP header value is one line of ASCII text")
        resolved[name] = value
    return resolved, secrets


def refuse_clear_text(url: str, where: str) -> None:
    """BindingError when `url` is plain http to a host that is not local: a key or secret header sent there
    crosses the network in clear text (and any proxy on the way reads it)."""
    if sends_in_clear(url):
        host = urllib.parse.urlsplit(url).hostname
        raise BindingError(f"{where}: refusing to send an API key or secret header over plain http to {host}; "
                           "use https (plain http is for local servers only)")


class Redactor:
    """Removes known secret values from text that may have seen them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret that contains another is removed whole
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        """`text` without this binding's secrets, nor any other secret the process has read (`known_secrets`):
        a server may echo another binding's key too."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return redact(text)


def display_host(url: str) -> str:
    """`host:port` of a URL for messages: never the `user:password@` part."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    return f"{host}:{parsed.port}" if parsed.port else host
