"""Identifiers of datasets and policies: one grammar, parsed and formatted in one place.

Four kinds of identifier name something ``hades`` can load:

- a catalogue name, ``hopper-4pairs`` or ``hopper-4pairs@1`` (a bundled dataset, optionally a version),
  or ``NAMESPACE/NAME[@VERSION]`` for an entry of one of the catalogue's namespaces
  (:data:`CATALOGUE_NAMESPACES`: ``iclr2024/hopper-4pairs-hades-r-seed0`` is a dataset the paper's
  authors published, converted); our own entries have no namespace;
- a Hugging Face Hub repository, ``hf://ORG/NAME[@REVISION]``; ``hf://datasets/ORG/NAME`` or
  ``hf://models/ORG/NAME`` pin the repository type (otherwise datasets are tried first, then models);
- a directory hub, ``file:///PATH/ORG/NAME[@REVISION]``: a folder on disk laid out like a Hub;
- a plain local path to a dataset or policy folder or a ``.safetensors`` file.

Hub-like identifiers end up as folder names in the local store, so their parts are validated
strictly (no ``..``, no empty parts, a small character set). Plain local paths are the user's own
files and are taken as written, relative parts included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from hades.errors import SpecError

KINDS = ("catalogue", "hf", "dir", "path")
# The catalogue's namespaces and what each holds. A name without a namespace is one of ours.
CATALOGUE_NAMESPACES = {
    "iclr2024": "datasets published with Behaviour Distillation (ICLR 2024), converted by hades convert",
}
REPO_TYPES = ("dataset", "model")

_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REV_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,126})")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_FORMS = "a catalogue name (hopper-4pairs, iclr2024/NAME), hf://ORG/NAME[@REVISION], file:///PATH/ORG/NAME[@REVISION] or a local path"


@dataclass(frozen=True)
class DatasetId:
    """A parsed identifier.

    ``name`` is the catalogue name, or ``ORG/NAME`` for the two hub kinds. ``revision`` is the
    catalogue version or the hub branch, tag or commit (``None``: the latest / ``main``).
    ``path`` is the root folder of a directory hub, or the local path itself.
    ``repo_type`` (``hf`` only) is ``dataset``, ``model`` or ``None`` (try both).
    """

    kind: str
    name: str = ""
    revision: str | None = None
    path: str | None = None
    repo_type: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SpecError(f"identifier kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        shown = self.name or self.path or ""
        if self.kind == "path":
            if not self.path or not str(self.path).strip():
                raise SpecError("empty path: give the folder or .safetensors file to use")
            if self.name or self.revision or self.repo_type:
                raise SpecError(f"a local path takes no name, @revision or repository type: {self.path!r}")
            return
        if self.kind == "catalogue":
            check_catalogue_name(self.name, shown)
            if self.revision is not None:
                check_part(self.revision, "version", shown)
        else:
            parts = self.name.split("/")
            if len(parts) != 2:
                raise SpecError(f"malformed repository {self.name!r}: expected ORG/NAME")
            check_part(parts[0], "organisation", shown)
            check_part(parts[1], "repository name", shown)
            if self.revision is not None:
                check_revision(self.revision, shown)
        if self.repo_type is not None and (self.kind != "hf" or self.repo_type not in REPO_TYPES):
            raise SpecError(f"repository type {self.repo_type!r} is only allowed on hf:// ids, as datasets/ or models/")
        if self.kind == "dir":
            if not self.path or not self.path.startswith("/"):
                raise SpecError(f"a directory hub needs an absolute root folder, got {self.path!r}")
            for component in self.path.split("/")[1:]:
                if component in (".", "..") or (component == "" and self.path != "/"):
                    raise SpecError(f"directory hub root {self.path!r} has an empty, '.' or '..' part; write it out in full")
        elif self.path is not None:
            raise SpecError(f"only directory hubs and local paths carry a path, not {self.kind} ids")

    @property
    def namespace(self) -> str:
        """The catalogue namespace (``iclr2024``), or "" for our own entries and the other kinds."""
        return split_catalogue_name(self.name)[0] if self.kind == "catalogue" else ""

    @property
    def org(self) -> str:
        return self.name.split("/")[0] if self.kind in ("hf", "dir") else ""

    @property
    def repo_name(self) -> str:
        return self.name.split("/")[-1] if self.kind in ("hf", "dir") else self.name

    @property
    def is_hub(self) -> bool:
        return self.kind in ("hf", "dir")

    @property
    def pinned(self) -> bool:
        """True when the revision is a full commit id (it cannot move)."""
        return self.revision is not None and is_commit(self.revision)

    def with_revision(self, revision: str | None) -> "DatasetId":
        return replace(self, revision=revision)

    def __str__(self) -> str:
        return format_id(self)


def is_commit(text: str) -> bool:
    return bool(_COMMIT.fullmatch(text))


def check_revision(revision: str, shown: str = "") -> str:
    """A branch, tag or commit: slash-separated parts of letters, digits, ``.``, ``_``, ``-``; never ``..``."""
    where = f" in {shown!r}" if shown else ""
    if not revision:
        raise SpecError(f"empty revision after '@'{where}: give a branch, tag or commit, or drop the '@'")
    if len(revision) > 200:
        raise SpecError(f"revision{where} is longer than 200 characters")
    for part in revision.split("/"):
        if not _REV_PART.fullmatch(part) or ".." in part or part.endswith(".lock"):
            raise SpecError(
                f"malformed revision {revision!r}{where}: use letters, digits, '.', '_', '-' and '/' "
                "(no empty parts, no '..')"
            )
    return revision


def check_part(part: str, what: str, shown: str) -> None:
    if not part:
        raise SpecError(f"malformed id {shown!r}: the {what} is empty; expected {_FORMS}")
    if not _PART.fullmatch(part) or ".." in part:
        raise SpecError(
            f"malformed id {shown!r}: {part!r} is not a valid {what} "
            "(letters, digits, '.', '_', '-', starting and ending with a letter or digit, no '..')"
        )


def split_catalogue_name(name: str) -> tuple[str, str]:
    """``("iclr2024", "hopper-4pairs-hades-r-seed0")`` for a namespaced name, ``("", name)`` otherwise."""
    namespace, slash, rest = name.partition("/")
    return (namespace, rest) if slash else ("", name)


def format_catalogue_name(name: str, namespace: str | None = None) -> str:
    """``NAMESPACE/NAME`` (or ``NAME``), checked; the inverse of :func:`split_catalogue_name`."""
    full = f"{namespace}/{name}" if namespace else name
    check_catalogue_name(full, full)
    return full


def check_catalogue_name(name: str, shown: str = "") -> str:
    """A catalogue name: ``NAME`` or ``NAMESPACE/NAME`` with a known namespace; each part like a Hub name part."""
    shown = shown or name
    namespace, rest = split_catalogue_name(name)
    if namespace or "/" in name:
        if namespace not in CATALOGUE_NAMESPACES:
            known = ", ".join(sorted(CATALOGUE_NAMESPACES))
            raise SpecError(f"malformed id {shown!r}: {namespace!r} is not a catalogue namespace (known: {known})")
        if "/" in rest:
            raise SpecError(f"malformed id {shown!r}: a catalogue name has at most one '/', as NAMESPACE/NAME")
    check_part(rest, "catalogue name", shown)
    return name


def _catalogue_candidate(text: str) -> bool:
    """``NAMESPACE/...`` with a known namespace reads as a catalogue name, not a relative path."""
    namespace, slash, _ = text.partition("/")
    return bool(slash) and namespace in CATALOGUE_NAMESPACES


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text or "\\" in text or text.startswith((".", "~"))
        or text.lower().endswith(".safetensors") or (len(text) > 1 and text[1] == ":")
    )


def parse_id(text: str) -> DatasetId:
    """Parse any identifier; malformed ones raise :class:`SpecError` saying which part is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"empty dataset id: expected {_FORMS}")
    text = text.strip()
    if any(ord(ch) < 32 for ch in text):
        raise SpecError(f"dataset id {text!r} contains control characters")
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        rest = text[scheme.end():]
        if name == "hf":
            return _parse_hf(rest, text)
        if name == "file":
            return _parse_file(rest, text)
        raise SpecError(f"unsupported scheme {name}:// in {text!r}: expected {_FORMS}")
    name, at, version = text.partition("@")
    if _looks_like_path(name if at else text) and not _catalogue_candidate(name):
        return DatasetId("path", path=text)
    if at and not version:
        raise SpecError(f"malformed id {text!r}: empty version after '@'; write NAME@VERSION or just NAME")
    if "@" in version:
        raise SpecError(f"malformed id {text!r}: more than one '@'")
    return DatasetId("catalogue", name, version if at else None)


def _split_revision(text: str, source: str) -> tuple[str, str | None]:
    head, at, revision = text.partition("@")
    if not at:
        return head, None
    if "@" in revision:
        raise SpecError(f"malformed id {source!r}: more than one '@'")
    return head, check_revision(revision, source)


def _parse_hf(rest: str, source: str) -> DatasetId:
    repo, revision = _split_revision(rest, source)
    parts = repo.split("/")
    repo_type = None
    if len(parts) == 3 and parts[0] in ("datasets", "models"):
        repo_type = parts[0][:-1]
        parts = parts[1:]
    if len(parts) != 2:
        raise SpecError(f"malformed Hub id {source!r}: expected hf://ORG/NAME[@REVISION] (or hf://datasets/ORG/NAME)")
    for part, what in zip(parts, ("organisation", "repository name")):
        check_part(part, what, source)
    return DatasetId("hf", "/".join(parts), revision, repo_type=repo_type)


def _parse_file(rest: str, source: str) -> DatasetId:
    if rest.startswith("localhost/"):
        rest = rest[len("localhost"):]
    if not rest.startswith("/"):
        raise SpecError(f"malformed directory hub {source!r}: expected file:///ABSOLUTE/PATH/ORG/NAME[@REVISION]")
    head, _, last = rest.rpartition("/")
    last, revision = _split_revision(last, source)
    components = [unquote(part) for part in head.split("/")[1:]] + [unquote(last)]
    for component in components:
        if component in ("", ".", "..") or "/" in component:
            raise SpecError(
                f"malformed directory hub {source!r}: empty, '.' or '..' path parts are not allowed; "
                "write the absolute path in full"
            )
    if len(components) < 2:
        raise SpecError(f"malformed directory hub {source!r}: expected file:///PATH/ORG/NAME, the path ends before ORG/NAME")
    org, name = components[-2:]
    for part, what in ((org, "organisation"), (name, "repository name")):
        check_part(part, what, source)
    root = "/" + "/".join(components[:-2])
    return DatasetId("dir", f"{org}/{name}", revision, path=root)


def parse_hub_root(text: str) -> tuple[str, str]:
    """Where ``hades list --hub`` looks: ``("hf", ORG)`` for ``ORG`` or ``hf://ORG`` (a Hub author),
    ``("dir", ROOT)`` for ``file:///ROOT`` (a directory hub, or one organisation folder of it)."""
    text = (text or "").strip()
    if text.lower().startswith("file://"):
        rest = text[len("file://"):]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if not rest.startswith("/"):
            raise SpecError(f"malformed directory hub {text!r}: expected file:///ABSOLUTE/PATH")
        components = [unquote(part) for part in rest.rstrip("/").split("/")[1:]] if rest != "/" else []
        if any(part in ("", ".", "..") or "/" in part for part in components):
            raise SpecError(f"malformed directory hub {text!r}: empty, '.' or '..' path parts are not allowed")
        return "dir", "/" + "/".join(components)
    org = text[len("hf://"):] if text.lower().startswith("hf://") else text
    check_part(org.rstrip("/"), "Hub organisation or user", text)
    return "hf", org.rstrip("/")


def format_id(identifier: DatasetId) -> str:
    """The text form; ``parse_id(format_id(x)) == x`` for every valid ``x``."""
    revision = f"@{identifier.revision}" if identifier.revision else ""
    if identifier.kind == "catalogue":
        return identifier.name + revision
    if identifier.kind == "hf":
        prefix = f"{identifier.repo_type}s/" if identifier.repo_type else ""
        return f"hf://{prefix}{identifier.name}{revision}"
    if identifier.kind == "dir":
        root = identifier.path.rstrip("/")
        components = [quote(part, safe="") for part in f"{root}/{identifier.name}".split("/")[1:]]
        return "file:///" + "/".join(components) + revision
    return str(identifier.path)
