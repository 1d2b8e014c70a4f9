"""Env-step efficiency of distillation recipes: the return of the ES mean against the env steps searched.

    python bench/efficiency.py --env hopper --pairs 4 --budget 50e6 --marks 5e6,10e6,20e6,50e6 \\
        --recipes openes-cpu,cma-ipop --seeds 0,1,2 --out bench/efficiency/hopper-4pairs \\
        [--recipes-file more.yaml] [--devices 2] [--checkpoint-every 10] [--dry-run | --report]

Every recipe (named below in RECIPES, or in a JSON/YAML file of ``name: settings`` given with
``--recipes-file``) runs ``hades`` distillation from zeros (no warm start) for every seed, until
its search has spent ``--budget`` env steps. At each mark of ``--marks`` (env steps; the budget is
always the last) the run stops at the first generation whose env steps reach it, and the dataset
the run would give at that point (the last ES mean, or the best validated one for recipes with
``keep_best``) is scored under the standard protocol: ``--score-seeds`` fresh inits (seeds 0-7) with
the recipe's first architecture, ``--score-envs`` envs x ``--score-steps`` steps, sampled actions
(the same program as the runner's validation, with seeds 0, 1, ... as ``hades train-from`` uses).

A recipe's settings: any :class:`hades.DistillConfig` field (``strategy``, ``population_size``,
a number or ``auto``, ``num_inits``, ``sigma``, ``es_lr``, ``fitness_shaping``, ``normalization``,
``sigma_decay``, ``restarts``, ...) plus ``preset`` (the starting point, default ``cpu``),
``arch`` (inner policies, ``;``-separated as for ``hades distill --arch``), ``inner_steps``,
``eval_envs`` and ``eval_steps`` (envs x steps per candidate), ``validate_every`` and
``validate_seeds`` (score the ES mean during the run; restarts need it) and ``keep_best`` (score
the best validated mean at a mark instead of the last one), and ``base`` (another recipe's name
whose settings these extend).

Each (recipe, seed) keeps its own hades run folder (the Distiller's checkpoint) and a results file
under ``--out/RECIPE/seedN/``; running the command again skips the marks that are done and
resumes the runs that are partial. The runs advance mark by mark, every recipe and seed to the
first mark before any goes on to the second, so a partial comparison is already a fair one.

Outputs in ``--out``: ``efficiency.csv`` (a row per recipe, seed and mark: search env steps, wall
seconds, score mean/std, the env steps of in-run validation and of the scoring itself),
``efficiency.png`` (return of the ES mean against search env steps, a curve per recipe with a
min-max band over seeds, the paper's figure as a horizontal line) and ``efficiency.md``, the
table this prints: return at each mark (mean ± std over seeds) and the search env steps and wall
time until the first mark at or above 90% / 100% of the paper's figure (``--paper`` another). Wall seconds count the
distillation (compiling, searching, in-run validation), counted at every checkpointed chunk of a
run, not the scoring at the marks; a chunk cut short by an interruption is not counted, its redone
run is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, efficiency_report
from efficiency_report import report  # noqa: E402

# The final population-mean fitness the paper reports for HaDES-R (mean of 3 seeds).
PAPER_RETURNS = {("hopper", 4): 1745.0, ("halfcheetah", 4): 2922.0, ("walker2d", 4): 1792.0,
                 ("hopper", 64): 1787.0, ("walker2d", 64): 2438.0, ("halfcheetah", 64): 3318.0}

RECIPES = {
    # The zoo's runs: OpenES, population 64, one 1000-step episode per candidate.
    "openes-cpu": {"preset": "cpu", "strategy": "open_es", "population_size": 64, "num_inits": 1,
                   "fitness_shaping": "centered_rank", "sigma": 0.03, "es_lr": 0.05, "arch": "256,256:tanh",
                   "eval_envs": 1, "eval_steps": 1000, "normalization": "constant"},
    # The same with two inits per candidate and the best validated mean kept.
    "openes-keepbest": {"base": "openes-cpu", "num_inits": 2, "validate_every": 10, "keep_best": True},
    # OpenES whose step and noise shrink as it goes (x0.998 per generation, to a third of the start).
    "openes-decay": {"base": "openes-cpu", "num_inits": 2, "es_lr_decay": 0.998, "es_lr_floor": 0.0167,
                     "sigma_decay": 0.998, "sigma_floor": 0.01},
    # Full CMA-ES, population 4 + 3 ln n, no restarts.
    "cma": {"preset": "fast", "restarts": 0},
    # The fast preset: CMA-ES with IPOP restarts, validated every 10 generations, best mean kept.
    "cma-ipop": {"preset": "fast", "validate_every": 10, "keep_best": True},
    # Sep-CMA-ES and the natural ES with their own rank weights.
    "sep-cma": {"preset": "fast", "strategy": "sep_cma_es", "restarts": 0},
    "snes": {"preset": "fast", "strategy": "snes", "restarts": 0, "sigma_floor": 0.0, "population_size": 32},
    "xnes": {"preset": "fast", "strategy": "xnes", "restarts": 0, "sigma_floor": 0.0, "population_size": 32},
    # Pairs that train several architectures (the fitness averages over them).
    "cma-multiarch": {"preset": "fast", "restarts": 0, "arch": "256,256:tanh;64,64:relu;256,256,256:relu"},
    # The presets as shipped (for MinAtar: SNES; fast adds restarts, validated every 10 generations).
    "cpu": {"preset": "cpu"},
    "fast": {"preset": "fast", "validate_every": 10, "keep_best": True},
    "fast-norestart": {"preset": "fast", "restarts": 0},
    # The MinAtar fast preset before the Breakout comparison: SNES, population 64, restarts, validated.
    "snes-minatar": {"preset": "fast", "strategy": "snes", "population_size": 64, "sigma": 0.5, "es_lr": 0.05,
                     "fitness_shaping": "rank_weights", "num_inits": 1, "restarts": 2, "eval_envs": 2,
                     "eval_steps": 1000, "validate_every": 10, "keep_best": True},
    # The zoo's breakout-16 run: OpenES (sigma 0.1, lr 0.02), population 256, 4 envs x 1000 steps.
    "openes-minatar": {"preset": "cpu", "strategy": "open_es", "sigma": 0.1, "es_lr": 0.02,
                       "fitness_shaping": "centered_rank", "population_size": 256, "num_inits": 1, "eval_envs": 4,
                       "eval_steps": 1000, "normalization": "constant"},
}
BENCH_KEYS = ("preset", "arch", "inner_steps", "eval_envs", "eval_steps", "validate_every", "validate_seeds",
              "keep_best", "base")

@dataclass(frozen=True)
class Plan:
    """One recipe as it runs: its config (num_generations left open), validation and scoring choice."""

    name: str
    config: object  # DistillConfig
    validation: object | None  # Validation
    keep_best: bool


def parse_steps(text: str) -> int:
    return int(float(text))


def load_recipes(path: str | None) -> dict:
    """The built-in recipes, extended (and overridden by name) by the JSON or YAML file at ``path``."""
    recipes = {name: dict(settings) for name, settings in RECIPES.items()}
    if path:
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, dict) or not all(isinstance(value, dict) for value in data.values()):
            raise SystemExit(f"error: {path} must map recipe names to settings")
        recipes.update({str(name): dict(settings) for name, settings in data.items()})
    return recipes


def resolve(recipes: dict, name: str, seen: tuple = ()) -> dict:
    """A recipe's settings with its ``base`` chain folded in."""
    if name not in recipes:
        raise SystemExit(f"error: no recipe named {name!r}; known: {', '.join(sorted(recipes))}")
    if name in seen:
        raise SystemExit(f"error: recipe {name!r} extends itself through {' -> '.join(seen)}")
    settings = dict(recipes[name])
    base = settings.pop("base", None)
    return {**resolve(recipes, base, (*seen, name)), **settings} if base else settings


def build_plan(name: str, settings: dict, env: str, pairs: int, seed: int, score_protocol) -> Plan:
    from hades.distillation import preset
    from hades.evaluate import EvalProtocol
    from hades.policy import parse_arch
    from hades.validation import Validation

    fields = {key: value for key, value in settings.items() if key not in BENCH_KEYS}
    if str(fields.get("population_size", "")).lower() == "auto":
        fields["population_size"] = None
    base = preset(settings.get("preset", "cpu"), env, pairs)
    recipe, extra = base.recipe, base.extra_archs
    if settings.get("arch"):
        archs = [parse_arch(part) for part in str(settings["arch"]).split(";") if part.strip()]
        recipe, extra = replace(recipe, arch=archs[0]), tuple(archs[1:])
    if settings.get("inner_steps"):
        recipe = replace(recipe, steps=int(settings["inner_steps"]))
    protocol = EvalProtocol(int(settings.get("eval_envs", base.protocol.num_envs)),
                            int(settings.get("eval_steps", base.protocol.num_steps)))
    config = preset(settings.get("preset", "cpu"), env, pairs, recipe=recipe, extra_archs=extra, protocol=protocol,
                    seed=seed, **fields)
    every = int(settings.get("validate_every", 10 if config.restarts else 0))
    validation = None
    if every:
        validation = Validation(every, int(settings.get("validate_seeds", 8)), score_protocol)
    return Plan(name, config, validation, bool(settings.get("keep_best", False)))


# -- one (recipe, seed) run ------------------------------------------------------------------------

class Run:
    """The folder of one (recipe, seed): ``run/`` (the hades run and its checkpoint) and ``results.json``."""

    def __init__(self, root: Path, plan: Plan, checkpoint_every: int, num_devices: int | None):
        self.root, self.plan = root, plan
        self.checkpoint_every, self.num_devices = checkpoint_every, num_devices
        self.results_path = root / "results.json"
        self._score = None
        self.results = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {"marks": [],
                                                                                                        "wall_seconds": 0.0}

    @property
    def out(self) -> Path:
        return self.root / "run"

    def done(self, mark: int) -> bool:
        return any(row["mark"] == mark for row in self.results["marks"])

    def progress(self) -> tuple[int, int, list]:
        """(generations, search env steps, restarts) in the checkpoint so far."""
        from hades.checkpoint import load_checkpoint
        from hades.errors import MissingCheckpointError

        try:
            checkpoint = load_checkpoint(self.out)
        except MissingCheckpointError:
            return 0, 0, []
        history = checkpoint.history()
        return len(history), history[-1]["env_steps"] if history else 0, checkpoint.restarts()

    def steps_per_generation(self, restarts: list) -> int:
        config = self.plan.config
        size = restarts[-1]["population_size"] if restarts else config.population_size
        return replace(config, population_size=size).env_steps_per_generation

    def advance(self, mark: int):
        """Run until the search has spent ``mark`` env steps; returns the Distiller that stopped there and its dataset.

        The Distiller's env-step budget stops it at the first generation that reaches the mark, also when a
        restart grew the population after the generations were planned (restarts only make them dearer, so
        the plan is an upper bound)."""
        from hades.errors import SettingsMismatchError
        from hades.runner import Distiller

        generations, steps, restarts = self.progress()
        running = steps < mark  # else the checkpoint is there already (an earlier version could overshoot)
        target = generations + max(0, math.ceil((mark - steps) / self.steps_per_generation(restarts)))
        config = replace(self.plan.config, num_generations=target)
        distiller = Distiller(config, self.out, self.checkpoint_every, self.num_devices,
                              validation=self.plan.validation, max_env_steps=mark)
        start = time.perf_counter()

        def count_wall(progress=None):
            """Add the wall time since the last count, at each checkpointed chunk: an interruption loses only
            the chunk it cut short, which is counted again when it is redone."""
            nonlocal start
            if running:
                now = time.perf_counter()
                self.results["wall_seconds"] += now - start
                start = now
                self._save()

        try:
            dataset = distiller.run(resume=generations > 0, on_progress=count_wall)
        except SettingsMismatchError as exc:
            raise SystemExit(f"error: {exc}: recipe {self.plan.name!r} changed since {self.root} was made; "
                             "delete that folder or give the recipe another name") from None
        count_wall()
        return distiller, dataset

    def score(self, dataset, seeds: int, protocol):
        """The returns of ``seeds`` fresh inits (seeds 0, 1, ...) trained on ``dataset`` with the recipe's first
        architecture: the standard evaluation, compiled once for every dataset of the run's shapes."""
        from hades.validation import Validation, make_validate

        if self._score is None:
            self._score = make_validate(self.plan.config, Validation(1, seeds, protocol, first_seed=0),
                                        *dataset.normalization_arrays())
        return self._score(dataset.states, dataset.actions)

    def record(self, mark: int, score_seeds: int, score_protocol) -> dict:
        distiller, best = self.advance(mark)
        dataset = best if self.plan.keep_best else distiller.last_dataset
        returns = self.score(dataset, score_seeds, score_protocol)
        history = distiller.history
        validation_rows = len(distiller.validation_history)
        validation = self.plan.validation
        per_score = score_protocol.num_envs * score_protocol.num_steps * score_seeds
        row = {
            "recipe": self.plan.name, "seed": self.plan.config.seed, "mark": mark, "generations": len(history),
            "population": distiller.population_size, "restarts": len(distiller.restarts),
            "search_env_steps": history[-1]["env_steps"],
            "validation_env_steps": 0 if validation is None else validation_rows * validation.seeds
            * validation.protocol.num_envs * validation.protocol.num_steps,
            "score_env_steps": per_score * (1 + sum(1 for row in self.results["marks"])),
            "wall_seconds": round(self.results["wall_seconds"], 1),
            "search_seconds": round(sum(row["seconds"] for row in history), 1),
            "score_mean": round(float(returns.mean()), 2), "score_std": round(float(returns.std()), 2),
        }
        self.results["marks"].append(row)
        self._save()
        return row

    def _save(self) -> None:
        from hades.formats import atomic_write_bytes

        atomic_write_bytes(self.results_path, json.dumps(self.results, indent=1).encode())


# -- the command -----------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--budget", type=parse_steps, default=50_000_000, help="Search env steps per run.")
    parser.add_argument("--marks", default="5e6,10e6,20e6,50e6", help="Env steps at which the ES mean is scored.")
    parser.add_argument("--recipes", default=None, help="Comma-separated recipe names (default: all).")
    parser.add_argument("--recipes-file", default=None, help="JSON or YAML file of more recipes (name: settings).")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("bench/efficiency/run"))
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--devices", type=int, default=None, help="Devices to shard the population over (CPU: one per core).")
    parser.add_argument("--score-seeds", type=int, default=8)
    parser.add_argument("--score-envs", type=int, default=4)
    parser.add_argument("--score-steps", type=int, default=1024)
    parser.add_argument("--paper", type=float, default=None,
                        help="The reference return (line and 90%%/100%% columns); default: the paper's figure for ENV and PAIRS.")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan and its env-step cost; run nothing.")
    parser.add_argument("--report", action="store_true",
                        help="Write and print the table, CSV and plot of the marks recorded so far; run nothing.")
    return parser.parse_args(argv)


def dry_run(plans: dict, runs: dict, marks: list[int], score_seeds: int, score_protocol) -> None:
    from hades.policy import format_arch

    total = 0
    for name, plan in plans.items():
        config = plan.config
        per_generation = config.env_steps_per_generation
        print(f"{name}: {config.strategy}, population {config.population_size}, {config.inits_per_generation} init(s) x "
              f"{len(config.architectures)} arch(s) x {config.protocol.num_envs} env(s) x {config.protocol.num_steps} steps; "
              f"{'; '.join(format_arch(arch) for arch in config.architectures)}, {config.recipe.steps} inner steps; "
              f"{config.normalization} normalisation; {per_generation:,} env steps per generation, "
              f"about {math.ceil(marks[-1] / per_generation)} generations"
              + (f"; validation every {plan.validation.every}" if plan.validation else "")
              + (f"; up to {config.restarts} restarts" if config.restarts else "")
              + ("; scores the best validated mean" if plan.keep_best else ""))
        for seed, run in runs[name].items():
            generations, steps, restarts = run.progress()
            done = sum(run.done(mark) for mark in marks)
            print(f"  seed {seed}: {run.root}: {generations} generations, {steps:,} env steps, {done}/{len(marks)} marks")
            total += max(0, marks[-1] - steps)
    scoring = len(plans) * len(next(iter(runs.values()), {})) * len(marks) * score_seeds * score_protocol.num_envs \
        * score_protocol.num_steps
    print(f"left to search: {total:,} env steps (plus in-run validation); scoring: {scoring:,} env steps in all")


def main(argv: list[str] | None = None) -> int:
    from hades.errors import HadesError

    try:
        return _main(parse_args(argv))
    except HadesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main(args) -> int:
    from hades.multihost import configure_devices

    configure_devices(args.devices)
    from hades.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    from hades.envs import get_env_spec
    from hades.evaluate import EvalProtocol

    env = get_env_spec(args.env).name
    marks = sorted({parse_steps(mark) for mark in args.marks.split(",") if mark.strip()} | {args.budget})
    marks = [mark for mark in marks if mark <= args.budget]
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    recipes = load_recipes(args.recipes_file)
    names = [name.strip() for name in args.recipes.split(",")] if args.recipes else list(recipes)
    score_protocol = EvalProtocol(args.score_envs, args.score_steps)
    paper = args.paper if args.paper is not None else PAPER_RETURNS.get((env, args.pairs))
    plans = {name: build_plan(name, resolve(recipes, name), env, args.pairs, 0, score_protocol) for name in names}
    runs = {name: {seed: Run(args.out / name / f"seed{seed}", replace(plan, config=replace(plan.config, seed=seed)),
                             args.checkpoint_every, args.devices) for seed in seeds} for name, plan in plans.items()}
    if args.dry_run:
        dry_run(plans, runs, marks, args.score_seeds, score_protocol)
        return 0
    if args.report:
        print(report(args.out, names, seeds, marks, env, args.pairs, paper))
        return 0
    for mark in marks:
        for name in names:
            for seed, run in runs[name].items():
                if run.done(mark):
                    continue
                row = run.record(mark, args.score_seeds, score_protocol)
                print(f"{name} seed {seed}: {row['search_env_steps']:,} env steps (gen {row['generations']}): "
                      f"{row['score_mean']:.1f} ± {row['score_std']:.1f}", flush=True)
        report(args.out, names, seeds, marks, env, args.pairs, paper)
    print(report(args.out, names, seeds, marks, env, args.pairs, paper))
    return 0


if __name__ == "__main__":
    sys.exit(main())
