"""Credentials never reach a terminal: ``http://user:TOKEN@host`` prints as ``http://***@host``."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_TOKENS = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b")  # a Hugging Face access token, wherever it appears


def redact_urls(text: str) -> str:
    """``text`` with the user-info part of every URL and every ``hf_...`` token replaced by ``***``."""
    return _TOKENS.sub("hf_***", _CREDENTIALS.sub(r"\g<scheme>***@", text))
