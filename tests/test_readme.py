"""The README's Python snippets (the "From Python" part of its Quickstart) run as written, in a
fresh process, against the test Hub (where ``ORG/hopper-4pairs@v1`` is the bundled hopper-4pairs)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\nFrom Python"):text.index("\n## Identifiers")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _uses_torch(block: str) -> bool:
    return re.search(r"^\s*(import|from) torch", block, re.M) is not None


@pytest.fixture
def readme_hub(hub_server, hades_env, tmp_path):
    """The test Hub holding ORG/hopper-4pairs (tag v1), and a working folder for the snippets."""
    import hades
    from hades.registry import resolve

    hades.push(resolve("hopper-4pairs"), "hf://datasets/ORG/hopper-4pairs", tag="v1")
    work = tmp_path / "work"
    work.mkdir()
    return {"server": hub_server, "env": hades_env, "work": work}


def _run(blocks: list[str], readme_hub) -> subprocess.CompletedProcess:
    script = readme_hub["work"] / "readme_snippets.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=readme_hub["work"], env=readme_hub["env"],
                          capture_output=True, text=True, timeout=1500)


def test_the_readme_python_section_runs(readme_hub):
    blocks = python_blocks()
    assert len(blocks) >= 5 and any(_uses_torch(block) for block in blocks)
    proc = _run([block for block in blocks if not _uses_torch(block)], readme_hub)
    assert proc.returncode == 0, proc.stderr[-4000:]
    work, server = readme_hub["work"], readme_hub["server"]
    assert (work / "policies" / "seed0" / "policy.safetensors").is_file()
    assert ("model", "ORG/breakout-16-policy") in server.state.repos
    assert (work / "runs" / "breakout-6" / "dataset.safetensors").is_file()
    index = json.loads((work / "my-catalogue" / "index.json").read_text())
    assert [(row["name"], row["version"]) for row in index] == [("breakout-6", "1.0")]


def test_the_readme_torch_snippet_runs(readme_hub):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (the README's torch snippet needs it)")
    blocks = python_blocks()
    needed = [block for block in blocks if "hf_hub_download" in block or _uses_torch(block)]
    proc = _run(needed, readme_hub)
    assert proc.returncode == 0, proc.stderr[-4000:]
