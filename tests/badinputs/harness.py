"""Run one `hades` command line in this process, as the console script would, and observe it:
exit code, stdout, stderr, an escaping exception, and every file it left anywhere it may write."""

from __future__ import annotations

import io
import os
import signal
import socket
import tempfile
import threading
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CASE_TIMEOUT_S = int(os.environ.get("HADES_BAD_INPUT_TIMEOUT", "60"))  # a case still running after this hangs


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    crash: str = ""  # the traceback of an exception that escaped main()


class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def invoke(argv: list[str], env: dict[str, str], timeout_s: int = CASE_TIMEOUT_S) -> Outcome:
    from hades.cli import main

    saved = dict(os.environ)
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR is read again
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(timeout_s)
    code, crash = None, ""
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except _Hang:
        crash = f"still running after {timeout_s} s"
    except BaseException:  # noqa: BLE001 - anything escaping main() is what the corpus looks for
        crash = traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = None
    return Outcome(code, out.getvalue(), err.getvalue(), crash)


def log_outcome(case, outcome: Outcome, left: list[str]) -> None:
    """With ``HADES_BAD_INPUT_LOG=FILE``, one JSON line per case: what it did, for going through a run."""
    import json

    target = os.environ.get("HADES_BAD_INPUT_LOG")
    if target:
        row = {"id": case.id, "code": outcome.code, "stderr": outcome.stderr[-600:], "crash": outcome.crash[-800:],
               "left": left[:5]}
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def snapshot(*roots: Path) -> set[str]:
    """Every path (files, folders, links) under ``roots``."""
    found = set()
    for root in roots:
        if not root.exists():
            continue
        for folder, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                found.add(os.path.join(folder, name))
    return found


# -- Hubs that misbehave, all on 127.0.0.1 ---------------------------------------------------------

class RefusingPort:
    """An address nothing listens on: connections are refused."""

    def __init__(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()

    def stop(self):
        pass


class SilentPort:
    """Accepts connections (the kernel's backlog does) and never answers a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self):
        self.sock.close()


class BrokenHub:
    """Answers every request with a 500 (a Hub having a bad day)."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def _fail(self):
                body = b'{"error": "internal error"}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _fail

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class AuthHub:
    """The test Hub, requiring a token nobody here has."""

    def __init__(self):
        from hubserver import HubServer

        self.server = HubServer(token="secret-token").start()
        self.url = self.server.url

    def stop(self):
        self.server.stop()


HUBS = {"refused": RefusingPort, "silent": SilentPort, "broken": BrokenHub, "auth": AuthHub}
