"""An in-memory server speaking the part of the Hugging Face Hub API that huggingface_hub 2.x uses
to create repositories, commit (inline and Git-LFS uploads), tag, list and download.

The real client talks to it through ``HF_ENDPOINT``. Each repository keeps every commit (a dict of
path -> bytes) and its branch and tag refs. Options make it answer like a Hub in trouble: require a
token (401 otherwise), send only part of a file and then hang or drop the connection, or serve
bytes that differ from what was committed, or take ``delay`` seconds over every upload and
download (a slow Hub, so that a process killed at a random moment is often killed mid-transfer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    lfs: set[str]
    message: str
    parent: str | None


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision in self.commits:
            oid = revision
        return self.commits.get(oid) if oid else None


@dataclass
class Fault:
    """Misbehaviour for downloads of one file: ``mode`` is ``stall`` (send half, then wait for
    ``release``), ``drop`` (send half, then close; ``times`` decides how often) or ``tamper``
    (serve other bytes of the same length)."""

    path: str
    mode: str
    times: int = 1_000_000
    half_sent: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class HubState:
    """Everything the server knows; tests read and change it directly."""

    def __init__(self, token: str | None = None, lfs_threshold: int | None = None):
        self.token = token  # when set, every request must carry it
        self.lfs_threshold = lfs_threshold  # files of at least this many bytes go through Git-LFS
        self.delay = 0.0  # seconds every file download, LFS upload and commit takes (a slow Hub)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.faults: dict[str, Fault] = {}
        self.log: list[tuple[str, str]] = []
        self.connections: set = set()  # open client sockets, closed on stop
        self.lock = threading.Lock()
        self._counter = 0

    def new_oid(self, seed: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{seed}|{self._counter}".encode()).hexdigest()

    def commit(self, repo: Repo, files: dict[str, bytes], lfs: set[str], message: str, branch: str = "main") -> Commit:
        parent = repo.branches.get(branch)
        oid = self.new_oid(f"{repo.repo_id}|{parent}|{message}")
        commit = Commit(oid, files, lfs, message, parent)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def downloads(self, path_suffix: str) -> int:
        """How many GET requests downloaded a file whose URL ends in ``path_suffix``."""
        return sum(1 for method, path in self.log if method == "GET" and "/resolve/" in path and path.endswith(path_suffix))


class HubServer:
    """``with HubServer() as hub:`` serves on 127.0.0.1 at ``hub.url`` from a thread."""

    def __init__(self, token: str | None = None, lfs_threshold: int | None = None):
        self.state = HubState(token, lfs_threshold)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hubserver", daemon=True)

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        for fault in self.state.faults.values():
            fault.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.state.lock:
            connections = list(self.state.connections)
        for connection in connections:  # keep-alive connections would otherwise go on being served
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are part of the tests
            super().handle_error(request, client_address)


_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    base_url: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def setup(self):
        super().setup()
        with self.state.lock:
            self.state.connections.add(self.connection)

    def finish(self):
        with self.state.lock:
            self.state.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing ---------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str | None, message: str):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _authorised(self) -> bool:
        if self.state.token is None:
            return True
        given = self.headers.get("Authorization", "")
        if given == f"Bearer {self.state.token}":
            return True
        message = "Invalid credentials in Authorization header" if given else "Unauthorized: a token is required"
        self._error(401, None, message)
        return False

    def _route(self, method: str):
        self._payload = self._body() if method in ("POST", "PUT") else b""
        with self.state.lock:
            self.state.log.append((method, self.path))
        if not self._authorised():
            return
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")] if url.path.strip("/") else []
        query = parse_qs(url.query)
        try:
            self._dispatch(method, parts, query, url.path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    # -- routing ----------------------------------------------------------------------------------
    def _dispatch(self, method: str, parts: list[str], query: dict, raw_path: str):
        state = self.state
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo()
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if method == "GET" and parts == ["api", "datasets"]:
            return self._list("dataset", query)
        if method == "GET" and parts == ["api", "models"]:
            return self._list("model", query)
        if method == "PUT" and len(parts) == 2 and parts[0] == "lfs-upload":
            return self._lfs_put(parts[1])
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in _TYPES:
            repo_type = _TYPES[parts[1]]
            repo = state.repos.get((repo_type, f"{parts[2]}/{parts[3]}"))
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            rest = parts[4:]
            if method == "GET" and not rest:
                return self._info(repo, "main")
            if method == "GET" and rest[0] == "revision" and len(rest) >= 2:
                return self._info(repo, "/".join(rest[1:]))
            if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query)
            if method == "GET" and rest == ["refs"]:
                return self._refs(repo)
            if method == "POST" and rest[0] == "tag" and len(rest) >= 2:
                return self._tag(repo, "/".join(rest[1:]))
            if method == "POST" and rest[0] == "preupload":
                return self._preupload(repo)
            if method == "POST" and rest[0] == "commit" and len(rest) >= 2:
                return self._commit(repo, "/".join(rest[1:]))
            return self._error(404, None, f"no route {method} {raw_path}")
        if method == "POST" and len(parts) >= 5 and parts[-4:-1] == ["info", "lfs", "objects"] and parts[-1] == "batch":
            return self._lfs_batch()
        if method in ("GET", "HEAD") and "resolve" in parts:
            at = parts.index("resolve")
            head, tail = parts[:at], parts[at + 1:]
            repo_type = "dataset" if head and head[0] == "datasets" else "model"
            head = head[1:] if head and head[0] in ("datasets", "spaces") else head
            if len(head) != 2 or len(tail) < 2:
                return self._error(404, None, "bad resolve url")
            repo = state.repos.get((repo_type, "/".join(head)))
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            return self._resolve(repo, tail[0], "/".join(tail[1:]))
        return self._error(404, None, f"no route {method} {raw_path}")

    # -- repositories -----------------------------------------------------------------------------
    def _create_repo(self):
        payload = json.loads(self._payload or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.base_url}/{_PREFIX[repo_type]}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type, repo_id, private)
            self.state.repos[(repo_type, repo_id)] = repo
            self.state.commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                              set(), "initial commit")
        return self._json(200, {"url": url, "name": repo_id})

    def _card_data(self, commit: Commit) -> dict | None:
        readme = commit.files.get("README.md")
        if readme is None:
            return None
        match = _FRONT_MATTER.match(readme.decode("utf-8", "replace"))
        return yaml.safe_load(match.group(1)) if match else None

    def _info(self, repo: Repo, revision: str):
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        card = self._card_data(commit) or {}
        return self._json(200, {
            "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
            "tags": card.get("tags") or [], "cardData": card,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        })

    def _list(self, repo_type: str, query: dict):
        author = (query.get("author") or [None])[0]
        wanted = query.get("filter") or []
        rows = []
        for (kind, repo_id), repo in sorted(self.state.repos.items()):
            if kind != repo_type or (author and repo_id.split("/")[0] != author) or repo.private:
                continue
            commit = repo.resolve("main")
            card = self._card_data(commit) or {}
            tags = card.get("tags") or []
            if any(tag not in tags for tag in wanted):
                continue
            rows.append({"id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid, "tags": tags, "cardData": card})
        return self._json(200, rows)

    def _tree(self, repo: Repo, revision: str, prefix: str, query: dict):
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("true", "1")
        entries, folders = [], set()
        for path, data in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            rel = path[len(prefix.rstrip("/")) + 1:] if prefix else path
            if "/" in rel and not recursive:
                folders.add(path[: len(path) - len(rel)] + rel.split("/")[0])
                continue
            for depth in range(1, rel.count("/") + 1):
                folders.add(path[: len(path) - len(rel)] + "/".join(rel.split("/")[:depth]))
            entry = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
            if path in commit.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": git_blob_oid(name.encode()), "size": 0, "path": name} for name in sorted(folders)]
        return self._json(200, entries)

    def _refs(self, repo: Repo):
        def refs(names: dict, kind: str):
            return [{"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid} for name, oid in sorted(names.items())]

        return self._json(200, {"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"), "converts": []})

    def _tag(self, repo: Repo, revision: str):
        payload = json.loads(self._payload or b"{}")
        tag = payload.get("tag")
        with self.state.lock:
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if tag in repo.tags or tag in repo.branches:
                return self._error(409, None, f"Tag {tag} already exists")
            repo.tags[tag] = commit.oid
        return self._json(200, {"name": tag})

    # -- uploads ----------------------------------------------------------------------------------
    def _preupload(self, repo: Repo):
        payload = json.loads(self._payload or b"{}")
        threshold = self.state.lfs_threshold
        files = []
        for item in payload.get("files", []):
            mode = "lfs" if threshold is not None and item["size"] >= threshold else "regular"
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": None})
        return self._json(200, {"files": files, "commitOid": repo.branches.get("main")})

    def _lfs_batch(self):
        payload = json.loads(self._payload or b"{}")
        objects = []
        for item in payload.get("objects", []):
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{item['oid']}", "expires_in": 3600}}
            objects.append(entry)
        return self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str):
        data = self._payload
        time.sleep(self.state.delay)
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, None, "sha256 of the uploaded object does not match its oid")
        with self.state.lock:
            self.state.lfs_objects[oid] = data
        return self._json(200, {})

    def _commit(self, repo: Repo, revision: str):
        revision = unquote(revision)
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        header, operations = {}, []
        for line in self._payload.splitlines():
            if line.strip():
                item = json.loads(line)
                if item["key"] == "header":
                    header = item["value"]
                else:
                    operations.append(item)
        time.sleep(self.state.delay)  # received whole: a client killed now does not stop the commit
        with self.state.lock:
            files = dict(repo.resolve(revision).files)
            lfs = set(repo.resolve(revision).lfs)
            for item in operations:
                value = item["value"]
                path = value["path"]
                if item["key"] == "file":
                    files[path] = base64.b64decode(value["content"])
                    lfs.discard(path)
                elif item["key"] == "lfsFile":
                    data = self.state.lfs_objects.get(value["oid"])
                    if data is None:
                        return self._error(400, None, f"LFS object {value['oid']} was never uploaded")
                    files[path] = data
                    lfs.add(path)
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    for name in [name for name in files if name == path or name.startswith(path.rstrip("/") + "/")]:
                        files.pop(name)
                        lfs.discard(name)
                else:
                    return self._error(400, None, f"unsupported commit operation {item['key']}")
            commit = self.state.commit(repo, files, lfs, header.get("summary", ""), revision)
        url = f"{self.base_url}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return self._json(200, {"commitUrl": url, "commitOid": commit.oid, "success": True})

    # -- downloads --------------------------------------------------------------------------------
    def _resolve(self, repo: Repo, revision: str, path: str):
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        data = commit.files.get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if path in commit.lfs:
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = f'"{git_blob_oid(data)}"'
        fault = self.state.faults.get(path)
        if self.command == "HEAD":
            return self._send(200, data, headers, "application/octet-stream")
        if fault is not None and fault.mode == "tamper":
            data = bytes(len(data) - 1) + data[-1:] if len(data) > 1 else b"\x01"
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if self.state.delay and fault is None:
            return self._send_slowly(206 if start else 200, body, headers)
        if fault is not None and fault.mode in ("stall", "drop") and fault.times > 0:
            fault.times -= 1
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            fault.half_sent.set()
            if fault.mode == "stall":
                fault.release.wait(30)
            self.close_connection = True
            return
        self._send(206 if start else 200, body, headers, "application/octet-stream")


    def _send_slowly(self, status: int, body: bytes, headers: dict, parts: int = 8):
        """The body in ``parts`` pieces spread over ``state.delay`` seconds."""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        size = -(-len(body) // parts) or 1
        for offset in range(0, len(body), size):
            time.sleep(self.state.delay / parts)
            self.wfile.write(body[offset:offset + size])
            self.wfile.flush()


def repo_url(server: HubServer, repo_type: str, repo_id: str) -> str:
    return f"{server.url}/{_PREFIX[repo_type]}{quote(repo_id)}"
