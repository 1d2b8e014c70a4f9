"""Time limits on every Hub request and on each whole Hub operation: a Hub that accepts
connections and never answers must not block a pull or a push for ever.

``HADES_HUB_TIMEOUT`` (seconds, default 30) bounds each request; ``HADES_HUB_OPERATION_TIMEOUT``
(default 600) bounds one pull, push or listing, retries included; a request is tried at most
``MAX_TRIES`` times per operation (huggingface_hub would try six times, for half a minute, against
a Hub that refuses connections). The download threads huggingface_hub starts keep to the deadline
too (the latest of the operations running). Its retry messages are silenced: the one error line says what
happened."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from hades.errors import HubTimeoutError

_lock = threading.Lock()
_configured = [False]
# Per thread (concurrent pulls in threads each have their own): the operation's deadline and the
# requests it made, (method, url) -> count.
_state = threading.local()
# The deadlines of the outermost operations running now, by thread (one each). A thread outside any operation (the
# download workers huggingface_hub starts) keeps to the latest of them, so no worker outlives
# every operation it could belong to, and no operation is cut short by another's deadline.
_running: dict[int, float] = {}
MAX_TRIES = 3


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = default
    return value if value > 0 else default


def request_timeout() -> float:
    return _seconds("HADES_HUB_TIMEOUT", 30.0)


def operation_timeout() -> float:
    return _seconds("HADES_HUB_OPERATION_TIMEOUT", 600.0)


def configure() -> None:
    """Give huggingface_hub an HTTP client with our time limits (once per process) and quiet logs."""
    from huggingface_hub import constants

    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        if not os.environ.get(name):
            setattr(constants, name, request_timeout())
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    with _lock:
        if _configured[0]:
            return
        from huggingface_hub.utils import set_client_factory

        set_client_factory(_client)
        _configured[0] = True


def _client():
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook

    return httpx2.Client(event_hooks={"request": [hf_request_event_hook, _check_deadline]},
                         follow_redirects=True, timeout=httpx2.Timeout(request_timeout()))


def _check_deadline(request) -> None:
    timeouts = request.extensions.get("timeout") or {}
    if not any(value is not None for value in timeouts.values()):  # huggingface_hub passes timeout=None
        import httpx2

        request.extensions["timeout"] = httpx2.Timeout(request_timeout()).as_dict()
    deadline, tries_of = getattr(_state, "deadline", None), getattr(_state, "tries", None)
    if deadline is None:
        with _lock:
            if not _running:
                return
            deadline = max(_running.values())
        if getattr(_state, "worker_tries", None) is None:
            _state.worker_tries = {}
        tries_of = _state.worker_tries
    key = (request.method, str(request.url))
    tries_of[key] = tries = tries_of.get(key, 0) + 1
    if tries > MAX_TRIES:
        raise HubTimeoutError(f"the Hub at {_origin(request)} failed to answer {request.method} {request.url.path} "
                              f"{MAX_TRIES} times; it may be down or unreachable")
    if time.monotonic() > deadline:
        raise HubTimeoutError(f"the Hub at {_origin(request)} did not finish within {operation_timeout():.0f} s (retries included); it may be down")


def _origin(request) -> str:
    port = f":{request.url.port}" if request.url.port else ""
    return f"{request.url.scheme}://{request.url.host}{port}"


@contextmanager
def operation() -> Iterator[None]:
    """One Hub operation's time limit; nested operations share the outermost one's."""
    outermost = getattr(_state, "deadline", None) is None
    if outermost:
        _state.deadline, _state.tries = time.monotonic() + operation_timeout(), {}
        with _lock:
            _running[threading.get_ident()] = _state.deadline
    try:
        yield
    finally:
        if outermost:
            _state.deadline = None
            with _lock:
                _running.pop(threading.get_ident(), None)
