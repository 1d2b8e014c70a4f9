"""The ``hades`` command. Commands are thin: they parse options, call the library, print.

One error handler turns every :class:`hades.errors.HadesError` into one line on stderr and exit
code 1; ``HADES_DEBUG=1`` shows the traceback instead. Command modules import jax lazily.
"""

from __future__ import annotations

import os
import sys

import typer
from typer import exceptions as typer_exceptions
from typer._click import exceptions as click_exceptions  # typer bundles its own click

from hades.errors import HadesError
from hades.redact import redact_urls

app = typer.Typer(
    name="hades",
    help="Behaviour distillation: distil, share and train from tiny synthetic datasets.",
    epilog="Commands that print a result take --json; `hades COMMAND --help` shows examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from hades import __version__

        typer.echo(f"hades-zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version of hades-zoo and exit."),
) -> None:
    """Keeps `hades COMMAND` a group even while only one command is registered."""


# Registration order is the order of `hades --help`.
from hades.cli import train as _train  # noqa: E402,F401

for _optional in ("registry", "store", "distill", "neuroevolve", "publish", "convert"):
    try:
        __import__(f"hades.cli.{_optional}")
    except ModuleNotFoundError as _exc:  # a command module not present in this build
        if _exc.name != f"hades.cli.{_optional}":
            raise


def _fail(message: str, code: int = 1) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("HADES_DEBUG", "") not in ("", "0")
    from hades.compile_cache import enable_compilation_cache

    enable_compilation_cache()  # only environment variables: jax reads them if and when a command compiles
    command = typer.main.get_command(app)
    _plain_params(command)
    try:
        code = command.main(args=argv, prog_name="hades", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer_exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except typer_exceptions.Abort:
        _fail("aborted")
    except click_exceptions.UsageError as exc:  # exit 2, as click intends: the command line itself is wrong
        if debug:
            raise
        _fail(_escape(_usage_message(exc)), 2)
    except click_exceptions.ClickException as exc:
        if debug:
            raise
        _fail(_escape(exc.format_message()))
    except HadesError as exc:
        if debug:
            raise
        _fail(_escape(redact_urls(str(exc))))
    except ValueError as exc:  # a library dataclass refusing a setting (they validate with ValueError)
        if debug:
            raise
        _fail(_escape(f"bad settings: {exc}"))
    except MemoryError:
        if debug:
            raise
        _fail("not enough memory: an option asks for more than this machine has; choose smaller sizes")
    except OSError as exc:  # what the library could not check in advance (a disk that fills up, say)
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(_escape(redact_urls(f"{where}{exc.strerror or exc}")))
    except KeyboardInterrupt:
        if debug:
            raise
        _fail("interrupted", 130)


def _usage_message(exc) -> str:
    """click's message plus the command it concerns: ``hades distill: Missing argument 'ENV'.``"""
    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "hades"
    return f"{command}: {exc.format_message()} (see `{command} --help`)"


def _plain_params(command, parent=None) -> None:
    """Take text parameters and the help flag as typed: typer otherwise builds a pydantic adapter
    for each, and importing pydantic alone costs about 0.1 s of every command's start-up."""
    try:
        from typer._click import Context
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:  # another typer: its own coercion applies
        return
    ctx = Context(command, info_name=command.name, parent=parent, **(command.context_settings or {}))
    for param in command.get_params(ctx):  # includes the help option, which click creates lazily
        if hasattr(param, "_usage_display_name"):  # usage lines say ENV, not typer's {ENV}
            param._usage_display_name = _plain_usage_name(param)
        descriptor = getattr(param, "type_descriptor", None)
        plain = descriptor is not None and (descriptor.annotation is str or param.name == "help")
        if plain and getattr(param, "_runtime_param", 0) is None:
            param._runtime_param = PassThroughRuntimeParam(
                annotation=descriptor.annotation, parameter_info=descriptor.parameter_info)
    for sub in getattr(command, "commands", {}).values():
        _plain_params(sub, ctx)


def _plain_usage_name(param):
    def name() -> str:
        text = param.display_name_raw if param.required else f"[{param.display_name_raw}]"
        return text if param.nargs == 1 or text.endswith("...") else text + "..."

    return name


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.splitlines()[0] if text else "failed")
