"""The bad-input corpus (tests/badinputs/cases.py), every case run in this process as the console
script runs it. Each must: exit 1 (2 for a usage error), print exactly one line on stderr that names
the problem and no traceback, and leave nothing behind in the store, its output folder, TMPDIR or
the materials it was given. The misbehaving Hubs listen on 127.0.0.1 only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from badinputs import harness, materials  # noqa: E402
from badinputs.cases import all_cases  # noqa: E402
from conftest import REFERENCE_DIR  # noqa: E402

CASES = all_cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    paths = materials.build(root / "materials", REFERENCE_DIR if REFERENCE_DIR.is_dir() else None)
    hubs = {}
    yield {"root": root, "paths": paths, "hubs": hubs}
    for hub in hubs.values():
        hub.stop()


def _expand(argv, paths, out: Path) -> list[str] | None:
    expanded = []
    for arg in argv:
        while "{m:" in arg:
            start = arg.index("{m:")
            end = arg.index("}", start)
            name = arg[start + 3:end]
            if name not in paths:
                return None
            arg = arg[:start] + str(paths[name]) + arg[end + 1:]
        expanded.append(arg.replace("{out}", str(out)))
    return expanded


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, world):
    root, paths = world["root"], world["paths"]
    out = root / "outputs" / case.id
    out.mkdir(parents=True)
    argv = _expand(case.argv, paths, out)
    if argv is None:
        pytest.skip("needs the published result files (set HADES_REFERENCE_DIR)")
    home, tmp = root / "home", root / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {"HADES_HOME": str(home), "HF_HOME": str(root / "hf-home"), "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HADES_HUB_TIMEOUT": "3", "HF_HUB_DISABLE_XET": "1",
           "HADES_REGISTRY": "", "HADES_DEBUG": "", "HF_TOKEN": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    if case.hub:
        hubs = world["hubs"]
        if case.hub not in hubs:
            hubs[case.hub] = harness.HUBS[case.hub]()
        env["HF_ENDPOINT"] = hubs[case.hub].url
    watched = (home, out, tmp, root / "materials")
    before = harness.snapshot(*watched)
    outcome = harness.invoke(argv, env)
    left = sorted(harness.snapshot(*watched) - before)
    harness.log_outcome(case, outcome, left)
    assert not outcome.crash, outcome.crash
    expected = 2 if case.usage else 1
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == expected, (outcome.code, outcome.stderr, outcome.stdout[-500:])
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in outcome.stderr, outcome.stderr
    assert case.fragment in lines[0].lower(), lines[0]
    assert not left, left
    assert not (root / "materials" / "PICKLE-RAN").exists(), "a pickle ran code while being converted"


def test_the_corpus_is_large():
    assert len(CASES) >= 250, len(CASES)
