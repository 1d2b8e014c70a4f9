"""The bad-input corpus: every command, fed what a careless or hostile user might type.

A case is an argv template: ``{m:NAME}`` is a material's path (``materials.build``), ``{out}`` a path
inside the case's own output folder (which must stay empty), ``{hub:KIND}`` the address of a Hub that
misbehaves (``refused``, ``silent``, ``auth``). ``usage`` cases are refused by the command line itself
(exit 2); every other case must end with exit 1. Both print exactly one line on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

from badinputs.materials import corrupt_tensor_files, good_dataset, tampered_cards


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    fragment: str = ""  # text the error line must hold (lower case)
    usage: bool = False
    hub: str = ""  # the misbehaving Hub HF_ENDPOINT points at, if any


def _c(id, *argv, fragment="", usage=False, hub=""):
    return Case(id, tuple(argv), fragment.lower(), usage, hub)


def _over(base: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    """``base`` with ``extra`` appended; a flag of ``extra`` replaces the same flag (and its value) of ``base``."""
    argv = list(base)
    for flag in extra[::2]:
        if flag in argv:
            index = argv.index(flag)
            del argv[index:index + 2]
    return [*argv, *extra]


CORRUPT = sorted(corrupt_tensor_files(good_dataset()))
TAMPERED = sorted(tampered_cards(good_dataset()))
ODD_INPUTS = ("missing", "regular-file", "through-file", "empty-folder", "fifo", "symlink-loop", "name-too-long",
              "proc", "card-is-a-folder")
POLICY_BROKEN = ("recipe-missing", "recipe-a-string", "recipe-hidden-text", "recipe-arch-disagrees", "env-missing",
                 "env-a-string", "env-unknown", "env-other-dims", "normalization-unknown",
                 "normalization-constant-no-stats", "no-params", "params-nan", "params-wrong-shape",
                 "card-env-edited", "card-recipe-edited", "dataset-called-policy")
# Output targets no one can write: under /proc, through a regular file, a name too long, an existing file.
BAD_OUTS = {"proc": "/proc/hades-out", "through-file": "{m:regular-file}/out", "too-long": "{out}/" + "y" * 300}
BAD_ARCHS = ("", "x", "0x64", "2x0", "64,,64", "64:sparkle", "64:relu:magic", "64:relu:orthogonal:extra",
             "2x100000000", "-64", "c16")


def dataset_inputs() -> list[Case]:
    """Every broken dataset, bare and in a folder, through every command that reads datasets."""
    cases = []
    for name in CORRUPT:
        for form in ("bare", "folder"):
            path = f"{{m:{form}:{name}}}"
            cases.append(_c(f"verify-{form}-{name}", "verify", path))
            if form == "folder":
                cases.append(_c(f"show-{name}", "show", path))
                cases.append(_c(f"train-from-{name}", "train-from", path, "--seeds", "1", "--steps", "2"))
    for name in ("truncated-half", "states-nan", "kind-policy", "env-id-unknown", "pairs-disagree",
                 "recipe-a-string"):
        cases.append(_c(f"push-{name}", "push", f"{{m:folder:{name}}}", "--to", "file://{out}/hub/org/name"))
        cases.append(_c(f"publish-{name}", "publish", f"{{m:folder:{name}}}", "--name", "x", "--version", "1",
                        "--catalogue", "{out}/catalogue", "--seeds", "1", "--eval-steps", "2"))
        cases.append(_c(f"distill-init-from-{name}", "distill", "hopper", "--pairs", "4", "--init-from",
                        f"{{m:folder:{name}}}", "--out", "{out}/run", "--generations", "1", "--population", "4"))
    for name in TAMPERED:
        cases.append(_c(f"verify-{name}", "verify", f"{{m:{name}}}"))
        cases.append(_c(f"show-{name}", "show", f"{{m:{name}}}"))
    for name in ("card-env-edited", "card-evaluation-edited", "card-recipe-edited", "card-broken-yaml"):
        cases.append(_c(f"train-from-{name}", "train-from", f"{{m:{name}}}", "--seeds", "1", "--steps", "2"))
        cases.append(_c(f"push-{name}", "push", f"{{m:{name}}}", "--to", "file://{out}/hub/org/name"))
    return cases


def path_inputs() -> list[Case]:
    cases = []
    for name in ODD_INPUTS:
        path = f"{{m:{name}}}"
        for command in (("verify",), ("show",), ("train-from",), ("eval",), ("history",), ("convert",),
                        ("push", "--to", "file://{out}/hub/org/name")):
            extra = command[1:]
            cases.append(_c(f"{command[0]}-path-{name}", command[0], path, *extra))
        cases.append(_c(f"publish-path-{name}", "publish", path, "--name", "x", "--version", "1",
                        "--catalogue", "{out}/catalogue"))
    return cases


def policy_inputs() -> list[Case]:
    cases = []
    for name in POLICY_BROKEN:
        cases.append(_c(f"eval-policy-{name}", "eval", f"{{m:policy:{name}}}", "--eval-steps", "2", "--envs", "1"))
        cases.append(_c(f"verify-policy-{name}", "verify", f"{{m:policy:{name}}}"))
    for name in ("card-env-edited", "recipe-a-string"):
        cases.append(_c(f"push-policy-{name}", "push", f"{{m:policy:{name}}}", "--to", "file://{out}/hub/org/name"))
    cases.append(_c("eval-a-dataset", "eval", "{m:dataset}", "--eval-steps", "2"))
    cases.append(_c("eval-env-not-multitask", "eval", "{m:policy}", "--env", "walker2d", "--eval-steps", "2"))
    cases.append(_c("eval-env-unknown", "eval", "{m:policy}", "--env", "pogo-stick", "--eval-steps", "2"))
    cases.append(_c("eval-runs-zero", "eval", "{m:policy}", "--runs", "0", usage=True))
    cases.append(_c("eval-envs-zero", "eval", "{m:policy}", "--envs", "0", usage=True))
    cases.append(_c("eval-eval-steps-zero", "eval", "{m:policy}", "--eval-steps", "0", usage=True))
    cases.append(_c("eval-episodes-zero", "eval", "{m:policy}", "--episodes", "0", usage=True))
    cases.append(_c("eval-runs-text", "eval", "{m:policy}", "--runs", "many", usage=True))
    return cases


def train_options() -> list[Case]:
    base = ("train-from", "{m:dataset}", "--seeds", "1", "--steps", "2", "--eval-steps", "2", "--envs", "1")

    def t(id, *extra, usage=False, fragment=""):
        return _c(f"train-from-{id}", *_over(base, extra), usage=usage, fragment=fragment)

    cases = [t(f"arch-{index}", "--arch", arch) for index, arch in enumerate(BAD_ARCHS)]
    cases += [
        t("seeds-zero", "--seeds", "0", usage=True), t("seeds-negative", "--seeds", "-3", usage=True),
        t("seeds-huge", "--seeds", "100000000"), t("seed-negative", "--seed", "-1"),
        t("seed-huge", "--seed", str(2**70)), t("seed-text", "--seed", "one", usage=True),
        t("steps-zero", "--steps", "0"), t("steps-negative", "--steps", "-5"), t("steps-huge", "--steps", str(10**12)),
        t("lr-inf", "--lr", "inf"), t("lr-nan", "--lr", "nan"), t("lr-zero", "--lr", "0"),
        t("lr-negative", "--lr", "-0.1"), t("lr-text", "--lr", "fast", usage=True),
        t("loss-unknown", "--loss", "vibes"), t("loss-cross-entropy-continuous", "--loss", "cross_entropy"),
        t("max-grad-norm-negative", "--max-grad-norm", "-1"), t("max-grad-norm-nan", "--max-grad-norm", "nan"),
        t("envs-zero", "--envs", "0", usage=True), t("envs-huge", "--envs", str(10**9)),
        t("eval-steps-zero", "--eval-steps", "0", usage=True), t("eval-steps-huge", "--eval-steps", str(10**12)),
        t("episodes-zero", "--episodes", "0", usage=True), t("backend-unknown", "--backend", "warp"),
        t("video-proc", "--video", "/proc/hades.gif"), t("video-through-file", "--video", "{m:regular-file}/x.gif"),
        t("video-wrong-extension", "--video", "{out}/replay.txt"),
        t("save-proc", "--save", "/proc/hades-policies"), t("save-through-file", "--save", "{m:regular-file}/p"),
        t("save-existing-file", "--save", "{m:regular-file}"),
        t("unknown-option", "--colour", "blue", usage=True), t("multitask-one-dataset", "--multitask"),
        _c("train-from-multitask-same-env", "train-from", "{m:dataset}", "{m:dataset}", "--multitask", "--steps", "2"),
        _c("train-from-two-without-multitask", "train-from", "{m:dataset}", "{m:dataset}", "--steps", "2"),
        _c("train-from-no-dataset", "train-from", usage=True),
        _c("train-from-unknown-name", "train-from", "hopper-999pairs"),
        _c("train-from-bad-version", "train-from", "hopper-4pairs@9.9"),
    ]
    return cases


def distill_options() -> list[Case]:
    base = ("distill", "hopper", "--pairs", "4", "--generations", "1", "--population", "4", "--inner-steps", "2",
            "--eval-envs", "1", "--eval-steps", "2", "--out", "{out}/run")

    def d(id, *extra, usage=False, env=None, fragment=""):
        argv = _over(base, extra)
        if env:
            argv[1] = env
        return _c(f"distill-{id}", *argv, usage=usage, fragment=fragment)

    cases = [d(f"arch-{index}", "--arch", arch) for index, arch in enumerate(BAD_ARCHS)]
    cases += [d(f"out-{name}", "--out", target) for name, target in BAD_OUTS.items()]
    cases += [
        _c("distill-env-unknown", "distill", "pogo-stick", "--pairs", "4", "--out", "{out}/run"),
        _c("distill-no-env", "distill", usage=True), d("pairs-zero", "--pairs", "0", usage=True),
        d("pairs-huge", "--pairs", str(10**9)), d("pairs-text", "--pairs", "four", usage=True),
        d("generations-zero", "--generations", "0"), d("generations-negative", "--generations", "-1"),
        d("population-zero", "--population", "0"), d("population-one", "--population", "1"),
        d("population-odd", "--population", "5"), d("population-negative", "--population", "-4"),
        d("population-text", "--population", "lots"), d("population-huge", "--population", str(10**9)),
        d("inner-steps-zero", "--inner-steps", "0"), d("inner-steps-negative", "--inner-steps", "-2"),
        d("inits-zero", "--inits", "0"), d("eval-envs-zero", "--eval-envs", "0"),
        d("eval-envs-negative", "--eval-envs", "-1"), d("eval-steps-zero", "--eval-steps", "0"),
        d("normalization-unknown", "--normalization", "sideways"), d("sigma-zero", "--sigma", "0"),
        d("sigma-negative", "--sigma", "-1"), d("sigma-inf", "--sigma", "inf"), d("sigma-nan", "--sigma", "nan"),
        d("es-lr-inf", "--es-lr", "inf"), d("es-lr-nan", "--es-lr", "nan"), d("es-lr-negative", "--es-lr", "-1"),
        d("es-lr-decay-above-one", "--es-lr-decay", "2"), d("sigma-decay-negative", "--sigma-decay", "-0.5"),
        d("shaping-unknown", "--shaping", "curvy"), d("strategy-unknown", "--strategy", "luck"),
        d("method-unknown", "--method", "hades-z"), d("preset-unknown", "--preset", "turbo"),
        d("backend-unknown", "--backend", "warp"), d("backend-for-minatar", "--backend", "mjx", env="Breakout-MinAtar"),
        d("learned-labels-continuous", "--learned-labels"), d("sigma-decay-snes", "--strategy", "snes",
                                                             "--sigma-decay", "0.9"),
        d("restarts-zero-patience", "--restarts", "2", "--restart-patience", "0", usage=True),
        d("seed-negative", "--seed", "-1"),
        d("seed-huge", "--seed", str(2**70)), d("checkpoint-every-zero", "--checkpoint-every", "0", usage=True),
        d("devices-zero", "--devices", "0", usage=True), d("resume-nothing", "--resume"),
        d("init-from-missing", "--init-from", "{m:missing}"), d("init-from-other-env", "--init-from", "{m:dataset}",
                                                             env="walker2d"),
        d("init-from-other-pairs", "--init-from", "{m:dataset}", "--pairs", "8"),
        d("unknown-option", "--turbo", usage=True),
        d("out-existing-file", "--out", "{m:regular-file}"),
    ]
    return cases


def neuroevolve_options() -> list[Case]:
    base = ("neuroevolve", "hopper", "--generations", "1", "--population", "4", "--eval-envs", "1",
            "--eval-steps", "2", "--arch", "4:tanh", "--out", "{out}/run")

    def n(id, *extra, usage=False):
        return _c(f"neuroevolve-{id}", *_over(base, extra), usage=usage)

    return [
        _c("neuroevolve-env-unknown", "neuroevolve", "pogo-stick"), n("population-odd", "--population", "3"),
        n("population-zero", "--population", "0"), n("generations-zero", "--generations", "0"),
        n("arch-bad", "--arch", "2x0"), n("arch-huge", "--arch", "2x100000000"), n("sigma-nan", "--sigma", "nan"),
        n("es-lr-inf", "--es-lr", "inf"), n("eval-envs-zero", "--eval-envs", "0"),
        n("eval-steps-zero", "--eval-steps", "0"), n("strategy-unknown", "--strategy", "luck"),
        n("shaping-unknown", "--shaping", "curvy"), n("normalization-unknown", "--normalization", "sideways"),
        n("out-proc", "--out", "/proc/hades-out"), n("out-through-file", "--out", "{m:regular-file}/run"),
        n("resume-nothing", "--resume"), n("final-seeds-text", "--final-seeds", "x", usage=True),
        _c("neuroevolve-image-env", "neuroevolve", "digits"),
    ]


def registry_inputs() -> list[Case]:
    ids = ("", "@", "hopper-4pairs@", "@1.0", "hopper-4pairs@9.9", "no-such-dataset", "../../etc/passwd",
           "a/b/c/d", "hf://", "hf://datasets/", "hf://datasets/org", "hf://spaces/org/name", "hf://datasets/org/na me",
           "file://relative/org/name", "iclr2024/", "nowhere/hopper-4pairs", "x" * 300, "hopper-4pairs@1.0@2.0",
           "ftp://example/org/name")
    cases = []
    for index, identifier in enumerate(ids):
        for command in ("pull", "show", "train-from"):
            cases.append(_c(f"{command}-id-{index}", command, identifier))
        cases.append(_c(f"store-delete-id-{index}", "store", "delete", identifier))
    for kind in ("refused", "silent", "auth", "broken"):
        cases += [
            _c(f"pull-hub-{kind}", "pull", "hf://datasets/org/name", hub=kind),
            _c(f"show-hub-{kind}", "show", "hf://datasets/org/name", hub=kind),
            _c(f"list-hub-{kind}", "list", "--hub", "org", hub=kind),
            _c(f"push-hub-{kind}", "push", "{m:dataset}", "--to", "hf://datasets/org/name", hub=kind),
        ]
    cases += [
        _c("list-hub-bad-syntax", "list", "--hub", "hf://"), _c("list-env-unknown", "list", "--env", "pogo-stick"),
        _c("list-namespace-unknown", "list", "--namespace", "nowhere"),
        _c("list-method-unknown", "list", "--method", "hades-z"),
        _c("list-unknown-option", "list", "--colour", usage=True),
        _c("show-limit-zero", "show", "{m:dataset}", "--limit", "0", usage=True),
        _c("show-render-proc", "show", "{m:dataset}", "--render", "/proc/hades.png"),
        _c("show-render-through-file", "show", "{m:dataset}", "--render", "{m:regular-file}/x.png"),
        _c("show-render-wrong-extension", "show", "{m:dataset}", "--render", "{out}/states.txt"),
        _c("push-to-no-scheme", "push", "{m:dataset}", "--to", "org/name"),
        _c("push-to-bad-hf", "push", "{m:dataset}", "--to", "hf://datasets/only-org"),
        _c("push-to-spaces", "push", "{m:dataset}", "--to", "hf://spaces/org/name"),
        _c("push-to-model-repo", "push", "{m:dataset}", "--to", "hf://models/org/name"),
        _c("push-policy-to-dataset-repo", "push", "{m:policy}", "--to", "hf://datasets/org/name"),
        _c("push-to-relative-file", "push", "{m:dataset}", "--to", "file://relative/org/name"),
        _c("push-to-proc", "push", "{m:dataset}", "--to", "file:///proc/hades-hub/org/name"),
        _c("push-to-through-file", "push", "{m:dataset}", "--to", "file://{m:regular-file}/org/name"),
        _c("push-tag-space", "push", "{m:dataset}", "--to", "file://{out}/hub/org/name", "--tag", "v 1"),
        _c("push-tag-empty", "push", "{m:dataset}", "--to", "file://{out}/hub/org/name", "--tag", ""),
        _c("push-no-to", "push", "{m:dataset}", usage=True),
        _c("store-list-bad-id", "store", "list", "a/b/c/d"),
        _c("store-delete-nothing", "store", "delete", "org/absent"),
        _c("store-unknown-command", "store", "polish", usage=True),
        _c("unknown-command", "fly", usage=True),
    ]
    return cases


def publish_and_convert() -> list[Case]:
    base = ("publish", "{m:dataset}", "--name", "test-entry", "--version", "1", "--catalogue", "{out}/catalogue",
            "--seeds", "1", "--eval-steps", "2", "--eval-envs", "1", "--no-pictures")

    def p(id, *extra, usage=False):
        return _c(f"publish-{id}", *_over(base, extra), usage=usage)

    names = ("", "../x", "A B", "x/y", "tilde~name", "-leading-dash", "x" * 300, "name@1", ".hidden")
    versions = ("", "1..2", "1.0-", "../1", "1 0", "-1", "1/2")
    cases = [p(f"name-{index}", "--name", name) for index, name in enumerate(names)]
    cases += [p(f"version-{index}", "--version", version) for index, version in enumerate(versions)]
    cases += [
        p("namespace-unknown", "--namespace", "nowhere"), p("seeds-zero", "--seeds", "0", usage=True),
        p("transfer-bad", "--transfer", "2x0"), p("arch-bad", "--arch", "64:sparkle"),
        p("catalogue-proc", "--catalogue", "/proc/hades-catalogue"),
        p("catalogue-through-file", "--catalogue", "{m:regular-file}/catalogue"),
        p("catalogue-a-file", "--catalogue", "{m:regular-file}"),
        _c("publish-source-a-policy", base[0], "{m:policy}", *base[2:]),
        p("no-name", "--name", usage=True),
    ]
    cases += [
        _c("convert-not-a-pickle", "convert", "{m:regular-file}"),
        _c("convert-a-safetensors", "convert", "{m:bare-dataset}"),
        _c("convert-out-proc", "convert", "{m:pickle:good}", "--out", "/proc/hades-converted"),
        _c("convert-out-through-file", "convert", "{m:pickle:good}", "--out", "{m:regular-file}/x"),
        _c("convert-out-existing-file", "convert", "{m:pickle:good}", "--out", "{m:regular-file}"),
        _c("convert-malicious", "convert", "{m:pickle:malicious}"),
        _c("convert-a-dict", "convert", "{m:pickle:a-dict}"),
        _c("convert-truncated", "convert", "{m:pickle:truncated}"),
        _c("convert-empty", "convert", "{m:pickle:empty}"),
        _c("convert-a-list", "convert", "{m:pickle:a-list}"),
        _c("history-not-a-run", "history", "{m:dataset}"),
        _c("history-corrupt-fitness", "history", "{m:run:corrupt-fitness}"),
        _c("history-every-zero", "history", "{m:run:corrupt-fitness}", "--every", "0", usage=True),
    ]
    return cases


def all_cases() -> list[Case]:
    cases = [*dataset_inputs(), *path_inputs(), *policy_inputs(), *train_options(), *distill_options(),
             *neuroevolve_options(), *registry_inputs(), *publish_and_convert()]
    seen = set()
    for case in cases:
        if case.id in seen:
            raise ValueError(f"duplicate case id {case.id}")
        seen.add(case.id)
    return cases


def count_table() -> str:
    """The README's table of cases per command (see the README for the command that prints it)."""
    from collections import Counter

    cases = all_cases()
    counts = Counter(" ".join(case.argv[:2]) if case.argv[:1] == ("store",) else (case.argv[0] if case.argv else "")
                     for case in cases)
    usage = Counter(" ".join(case.argv[:2]) if case.argv[:1] == ("store",) else case.argv[0]
                    for case in cases if case.usage)
    lines = ["| command | cases | of which usage errors (exit 2) |", "|---|---:|---:|"]
    for command, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| `{command}` | {count} | {usage.get(command, 0)} |")
    lines.append(f"| all | {len(cases)} | {sum(usage.values())} |")
    return "\n".join(lines)

