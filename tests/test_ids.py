"""Identifiers: what parses, what it means, and that malformed ids are refused with a clear reason."""

from __future__ import annotations

import pytest

from hades.errors import SpecError
from hades.ids import DatasetId, format_id, parse_hub_root, parse_id


@pytest.mark.parametrize("text, expected", [
    ("hopper-4pairs", DatasetId("catalogue", "hopper-4pairs")),
    ("hopper-4pairs@2", DatasetId("catalogue", "hopper-4pairs", "2")),
    ("hf://org/name", DatasetId("hf", "org/name")),
    ("hf://Org-1/my.data_set@v1.0", DatasetId("hf", "Org-1/my.data_set", "v1.0")),
    ("hf://datasets/org/name@refs/pr/3", DatasetId("hf", "org/name", "refs/pr/3", repo_type="dataset")),
    ("hf://models/org/policy", DatasetId("hf", "org/policy", repo_type="model")),
    ("hf://org/name@" + "a" * 40, DatasetId("hf", "org/name", "a" * 40)),
    ("file:///srv/hub/org/name", DatasetId("dir", "org/name", path="/srv/hub")),
    ("file:///srv/my%20hub/org/name@v2", DatasetId("dir", "org/name", "v2", path="/srv/my hub")),
    ("file:///org/name", DatasetId("dir", "org/name", path="/")),
    ("./datasets/hop", DatasetId("path", path="./datasets/hop")),
    ("../elsewhere/hop", DatasetId("path", path="../elsewhere/hop")),
    ("/abs/folder", DatasetId("path", path="/abs/folder")),
    ("states.safetensors", DatasetId("path", path="states.safetensors")),
    ("~/hades/hop", DatasetId("path", path="~/hades/hop")),
])
def test_parse_and_round_trip(text, expected):
    parsed = parse_id(text)
    assert parsed == expected
    assert parse_id(format_id(parsed)) == parsed


def test_properties():
    did = parse_id("hf://org/name@" + "0" * 40)
    assert (did.org, did.repo_name, did.is_hub, did.pinned) == ("org", "name", True, True)
    assert not parse_id("hf://org/name@main").pinned
    assert str(did.with_revision("v1")) == "hf://org/name@v1"
    assert str(parse_id("file:///a b/o/n")) == "file:///a%20b/o/n"


@pytest.mark.parametrize("text, fragment", [
    ("", "empty dataset id"),
    ("   ", "empty dataset id"),
    ("hf://org", "expected hf://ORG/NAME"),
    ("hf://org/", "repository name is empty"),
    ("hf:///name", "organisation is empty"),
    ("hf://org/..", "not a valid repository name"),
    ("hf://../name", "not a valid organisation"),
    ("hf://org/../x", "expected hf://ORG/NAME"),
    ("hf://org/a..b", "not a valid repository name"),
    ("hf://org/na me", "not a valid repository name"),
    ("hf://org/name@", "empty revision"),
    ("hf://org/name@../main", "malformed revision"),
    ("hf://org/name@a//b", "malformed revision"),
    ("hf://org/name@v1@v2", "more than one '@'"),
    ("hf://spaces/org/name", "expected hf://ORG/NAME"),
    ("file://relative/org/name", "ABSOLUTE"),
    ("file:///srv/../org/name", "'..'"),
    ("file:///srv//org/name", "empty"),
    ("file:///name", "ends before ORG/NAME"),
    ("s3://bucket/key", "unsupported scheme s3://"),
    ("hopper 4pairs", "not a valid catalogue name"),
    ("hopper-4pairs@", "empty version"),
    ("hopper@1@2", "more than one '@'"),
    ("hopper@../1", "not a valid version"),
    ("-hopper", "not a valid catalogue name"),
    ("hop\x00per", "control characters"),
])
def test_malformed_ids_raise_spec_error(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_id(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_dataclass_validates_direct_construction():
    with pytest.raises(SpecError):
        DatasetId("hf", "org/../name")
    with pytest.raises(SpecError):
        DatasetId("catalogue", "x", repo_type="dataset")
    with pytest.raises(SpecError):
        DatasetId("dir", "org/name", path="relative")
    with pytest.raises(SpecError):
        DatasetId("path", path="")
    with pytest.raises(SpecError):
        DatasetId("zip", "x")
    with pytest.raises(AttributeError):
        parse_id("hopper").name = "other"  # frozen


def test_hub_roots():
    assert parse_hub_root("my-org") == ("hf", "my-org")
    assert parse_hub_root("hf://my-org/") == ("hf", "my-org")
    assert parse_hub_root("file:///srv/hub") == ("dir", "/srv/hub")
    with pytest.raises(SpecError):
        parse_hub_root("file:///srv/../hub")
    with pytest.raises(SpecError):
        parse_hub_root("bad org")


@pytest.mark.parametrize("text, expected", [
    ("iclr2024/hopper-4pairs-hades-r-seed0", DatasetId("catalogue", "iclr2024/hopper-4pairs-hades-r-seed0")),
    ("iclr2024/hopper-4pairs-hades-f-seed2@1.0", DatasetId("catalogue", "iclr2024/hopper-4pairs-hades-f-seed2", "1.0")),
])
def test_namespaced_catalogue_names(text, expected):
    parsed = parse_id(text)
    assert parsed == expected and parse_id(format_id(parsed)) == parsed
    assert parsed.namespace == "iclr2024" and parse_id("hopper-4pairs").namespace == ""


def test_catalogue_name_grammar_pair():
    from hades.ids import format_catalogue_name, split_catalogue_name

    assert format_catalogue_name("hopper-4pairs-hades-r-seed0", "iclr2024") == "iclr2024/hopper-4pairs-hades-r-seed0"
    assert split_catalogue_name("iclr2024/hopper-4pairs-hades-r-seed0") == ("iclr2024", "hopper-4pairs-hades-r-seed0")
    assert split_catalogue_name("hopper-4pairs") == ("", "hopper-4pairs")
    assert format_catalogue_name("hopper-4pairs") == "hopper-4pairs"


@pytest.mark.parametrize("name, namespace, fragment", [
    ("x", "nope", "not a catalogue namespace"),
    ("a/b", "iclr2024", "at most one '/'"),
    ("", "iclr2024", "is empty"),
    ("a..b", "iclr2024", "not a valid catalogue name"),
    ("-x", None, "not a valid catalogue name"),
])
def test_bad_catalogue_names(name, namespace, fragment):
    from hades.ids import format_catalogue_name

    with pytest.raises(SpecError, match=fragment):
        format_catalogue_name(name, namespace)


def test_a_path_under_an_unknown_namespace_stays_a_path():
    assert parse_id("runs/hopper-4") == DatasetId("path", path="runs/hopper-4")
    with pytest.raises(SpecError, match="at most one '/'"):
        parse_id("iclr2024/a/b")
