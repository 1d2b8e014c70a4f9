"""`hades publish`: what enters the catalogue and what is refused (killed publishes: tests/test_faults.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import make_hopper_dataset, tiny_recipe

from hades.evaluate import EvalProtocol
from hades.publish import PublishError, publish
from hades.registry import find_entry, load_catalogue, resolve

TINY = EvalProtocol(1, 50)


def tiny_source(tmp_path: Path, seed: int = 0) -> Path:
    """A dataset folder with a tiny card recipe, so that publishing it trains in seconds."""
    dataset = make_hopper_dataset(seed=seed)
    dataset = dataset.replace(info={**dataset.info, "recipe": tiny_recipe(steps=5).to_dict(),
                                    "method": {"name": "hades-r", "strategy": "open_es"}})
    folder = tmp_path / f"source-{seed}"
    if folder.exists():
        return folder
    dataset.save(folder)
    (folder / "fitness.csv").write_text("generation,mean\n1,2.0\n")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its sha256: what 'untouched' means."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_publish_measures_writes_and_indexes_an_entry(tmp_path, hades_env):
    from hades.trainfrom import standard_evaluation

    source = tiny_source(tmp_path)
    catalogue = tmp_path / "catalogue"
    result = publish(source, "hopper-tiny", "1.0", seeds=2, protocol=TINY, transfer=("8,8:relu",),
                     catalogue=catalogue)
    assert result.id == "hopper-tiny@1.0" and result.folder == catalogue / "hopper-tiny" / "1.0"
    # the standard evaluation is what train-from measures on the same seeds
    again = standard_evaluation(result.dataset, 2, TINY)
    assert result.evaluation["returns"] == again["returns"]
    assert [row["arch"] for row in result.architectures] == ["8,8:relu:orthogonal"]
    entry = find_entry("hopper-tiny", entries=load_catalogue(catalogue))
    assert entry.sha256 == result.sha256 and entry.method == "hades-r" and entry.source == "hades distill"
    assert entry.evaluation.mean == pytest.approx(result.evaluation["mean"])
    assert (result.folder / "fitness.csv").is_file() and (result.folder / "data" / "train.parquet").is_file()
    card = (result.folder / "README.md").read_text()
    assert "Architecture transfer" in card and "hopper-tiny" in card
    assert not list(catalogue.glob(".publish-*"))


def test_publish_refuses_a_published_version_and_leaves_the_catalogue_untouched(tmp_path, hades_env):
    source = tiny_source(tmp_path)
    catalogue = tmp_path / "catalogue"
    publish(source, "hopper-tiny", "1.0", seeds=1, protocol=TINY, transfer=(), catalogue=catalogue)
    before = snapshot(catalogue)
    with pytest.raises(PublishError, match="already published; published versions are immutable"):
        publish(tiny_source(tmp_path, seed=1), "hopper-tiny", "1.0", seeds=1, protocol=TINY, transfer=(),
                catalogue=catalogue)
    assert snapshot(catalogue) == before
    # a new version goes in beside it; the first stays as it was
    publish(source, "hopper-tiny", "1.1", seeds=1, protocol=TINY, transfer=(), catalogue=catalogue)
    assert [entry.version for entry in load_catalogue(catalogue)] == ["1.0", "1.1"]
    assert {k: v for k, v in snapshot(catalogue).items() if k.startswith("hopper-tiny/1.0")} == \
        {k: v for k, v in before.items() if k.startswith("hopper-tiny/1.0")}


def test_a_namespaced_entry_is_listed_pulled_and_verified(tmp_path, hades_env, monkeypatch):
    from hades.cli import main

    catalogue = tmp_path / "catalogue"
    publish(tiny_source(tmp_path), "hopper-4pairs-hades-r-seed0", "1.0", namespace="iclr2024", seeds=1,
            protocol=TINY, transfer=(), catalogue=catalogue, pictures=False, parquet=False)
    publish(tiny_source(tmp_path), "hopper-tiny", "1.0", seeds=1, protocol=TINY, transfer=(), catalogue=catalogue)
    monkeypatch.setenv("HADES_REGISTRY", str(catalogue))
    assert (catalogue / "iclr2024" / "hopper-4pairs-hades-r-seed0" / "1.0" / "dataset.safetensors").is_file()
    assert not (catalogue / "iclr2024" / "hopper-4pairs-hades-r-seed0" / "1.0" / "data").exists()
    assert resolve("iclr2024/hopper-4pairs-hades-r-seed0@1.0").is_dir()
    assert main_json(main, ["list", "--json"]) == ["hopper-tiny"]
    assert main_json(main, ["list", "--json", "--namespace", "iclr2024"]) == ["iclr2024/hopper-4pairs-hades-r-seed0"]
    assert main_json(main, ["list", "--json", "--all", "--env", "hopper", "--method", "hades-r"]) == [
        "hopper-tiny", "iclr2024/hopper-4pairs-hades-r-seed0"]
    assert main_json(main, ["list", "--json", "--all", "--method", "hades-f"]) == []
    for command in (["pull", "iclr2024/hopper-4pairs-hades-r-seed0"], ["verify", "iclr2024/hopper-4pairs-hades-r-seed0@1.0"]):
        try:
            main(command)
        except SystemExit as exc:
            assert exc.code in (0, None)


def main_json(main, argv: list[str]) -> list[str]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None)
    return [row["name"] for row in json.loads(buffer.getvalue())]


def one_line_error(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_bad_publish_input_is_one_line_and_writes_nothing(tmp_path, hades_env, capsys):
    from hades.cli import main

    catalogue = tmp_path / "catalogue"
    publish(tiny_source(tmp_path), "hopper-tiny", "1.0", seeds=1, protocol=TINY, transfer=(), catalogue=catalogue)
    before = snapshot(catalogue)
    source = str(tiny_source(tmp_path, seed=2))
    not_dataset = tmp_path / "not-a-dataset"
    not_dataset.mkdir()
    (not_dataset / "notes.txt").write_text("hello")
    run = tmp_path / "unfinished-run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "state.msgpack").write_bytes(b"\x80")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "dataset.safetensors").write_bytes(b"not safetensors")
    cases = [
        ([str(not_dataset), "--name", "x", "--version", "1"], "is not a dataset folder"),
        ([str(run), "--name", "x", "--version", "1"], "distillation run without outputs"),
        ([str(corrupt), "--name", "x", "--version", "1"], "corrupt"),
        ([str(tmp_path / "missing"), "--name", "x", "--version", "1"], "does not exist"),
        ([source, "--name", "a/b", "--version", "1"], "bad entry name"),
        ([source, "--name", "a..b", "--version", "1"], "not a valid catalogue name"),
        ([source, "--name", "ok", "--version", "../1"], "not a valid version"),
        ([source, "--name", "ok", "--version", "1", "--namespace", "nope"], "not a catalogue namespace"),
        ([source, "--name", "hopper-tiny", "--version", "1.0"], "already published"),
        ([source, "--name", "ok", "--version", "1", "--arch", "8,8:sigmoidal"], "activation"),
    ]
    for args, fragment in cases:
        line = one_line_error(main, ["publish", *args, "--catalogue", str(catalogue), "--seeds", "1",
                                     "--eval-envs", "1", "--eval-steps", "50", "--transfer", ""], capsys)
        assert fragment in line, (args, line)
        assert snapshot(catalogue) == before, args


@pytest.mark.reference
def test_a_converted_published_entry_carries_citation_license_and_source(tmp_path, hades_env, reference_dir, monkeypatch):
    """A result pickle of the paper's authors, published into iclr2024/: card, pull, verify, train-from."""
    from huggingface_hub import DatasetCard

    from hades.cli import main
    from hades.iclr2024 import find_runs

    results = reference_dir / "iclr2024-results"
    run = next(item for item in find_runs(results) if item.relative == "brax/distill/hopper/D4/seed0/data_final.pkl")
    assert run.name == "hopper-4pairs-hades-r-seed0"
    catalogue = tmp_path / "catalogue"
    result = publish(run.path, run.name, "1.0", namespace="iclr2024", seeds=1, protocol=TINY, transfer=(),
                     catalogue=catalogue, pictures=False, parquet=False)
    info = result.dataset.info
    source_sha = hashlib.sha256(run.path.read_bytes()).hexdigest()
    assert info["original"] == {"repository": "FLAIROx/behaviour-distillation", "sha256": source_sha,
                                "path": "results/ICLR/brax/distill/hopper/D4/seed0/data_final.pkl"}
    assert info["paper_comparison"]["recorded_fitness"] == pytest.approx(info["method"]["final_fitness"], abs=0.01)
    card = DatasetCard.load(result.folder / "README.md")
    assert card.data.license == "apache-2.0"
    text = card.text
    assert "@inproceedings{lupu2024behaviour" in text and "Apache License, Version 2.0" in text
    assert source_sha in text and "results/ICLR/brax/distill/hopper/D4/seed0/data_final.pkl" in text
    entry = load_catalogue(catalogue)[0]
    assert entry.source.startswith("FLAIROx/behaviour-distillation: results/ICLR/brax/distill/hopper/D4/seed0")
    monkeypatch.setenv("HADES_REGISTRY", str(catalogue))
    for argv in (["pull", "iclr2024/hopper-4pairs-hades-r-seed0"], ["verify", "iclr2024/hopper-4pairs-hades-r-seed0"],
                 ["train-from", "iclr2024/hopper-4pairs-hades-r-seed0", "--seeds", "1", "--envs", "1",
                  "--eval-steps", "20", "--steps", "3", "--arch", "8,8:tanh"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None), argv


@pytest.mark.reference
def test_a_converted_hades_f_entry_is_scored_from_its_own_init(tmp_path, hades_env, reference_dir):
    results = reference_dir / "iclr2024-results"
    path = results / "brax/no_virtual_batch_norm/overfit/hopper/D64/seed1/data_final.pkl"
    result = publish(path, "hopper-64pairs-hades-f-seed1", "1.0", namespace="iclr2024", seeds=1,
                     protocol=TINY, transfer=(), catalogue=tmp_path / "catalogue", pictures=False, parquet=False)
    own = result.evaluation["own_init"]
    # seed 1 of the published HaDES-F runs was evolved for the init of seed 421, drawn with pre-0.5 random bits
    assert own["init_seed"] == 421 and own["legacy_prng"] is True and len(own["returns"]) == 1
    assert result.dataset.info["paper_comparison"]["basis"] == "own_init"
    assert "From the fixed init this HaDES-F dataset was evolved for" in (result.folder / "README.md").read_text()


def test_an_older_run_folder_keeps_its_validation_scores_under_todays_name(tmp_path, hades_env):
    from hades.files import LEGACY_VALIDATION_CSV, VALIDATION_CSV

    source = tiny_source(tmp_path)
    (source / LEGACY_VALIDATION_CSV).write_text("generation,mean,std,min,max\n10,1.0,0.1,0.9,1.1\n")
    result = publish(source, "hopper-tiny", "1.0", seeds=1, protocol=TINY, transfer=(), catalogue=tmp_path / "catalogue")
    assert (result.folder / VALIDATION_CSV).read_text() == (source / LEGACY_VALIDATION_CSV).read_text()
    assert not (result.folder / LEGACY_VALIDATION_CSV).exists()
