"""The `gpudoctor` command: joins the command modules and turns errors into one line and an exit code.

Each command module exposes `register(app)`; none may import torch or transformers at import time.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from gpudoctor import __version__
from gpudoctor.errors import EXIT_INTERRUPTED, EXIT_PROBLEM, EXIT_USAGE, GpudoctorError

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "gpudoctor.cli.check",
    "gpudoctor.cli.plan",
    "gpudoctor.cli.pull",
    "gpudoctor.cli.train",
    "gpudoctor.cli.chat",
    "gpudoctor.cli.merge",
    "gpudoctor.cli.export",
    "gpudoctor.cli.compare",
    "gpudoctor.cli.data",
    "gpudoctor.cli.install",
    "gpudoctor.cli.demo",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpudoctor {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="gpudoctor",
        help="Environment doctor, memory planner and QLoRA launcher for one GPU workstation.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ) -> None:
        """gpudoctor: check → plan → train → chat."""

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that command group is not built yet
                continue
            raise
        module.register(app)
    return app


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code; every error becomes one line on stderr.

    The command runs through click's make_context/invoke rather than its main(), which would print a
    blank line and turn an EOFError (a damaged file's, say) into Abort, "interrupted". Here an
    interrupt is exit 130 only when one happened: KeyboardInterrupt, or an Abort after a SIGINT;
    anything else unexpected is one line naming what failed and its log file (last_resort.py), exit 1.
    """
    from gpudoctor.cli.last_resort import SigintSeen, unexpected

    command = typer.main.get_command(build_app())
    args = list(sys.argv[1:] if argv is None else argv)
    with SigintSeen() as sigint:
        try:
            with command.make_context("gpudoctor", args) as ctx:
                result = command.invoke(ctx)
        except typer.Exit as err:
            return err.exit_code
        except Exception as err:
            return _handled(err, args, sigint.seen, unexpected)
        except KeyboardInterrupt:
            sys.stderr.write("gpudoctor: interrupted\n")
            return EXIT_INTERRUPTED
    if isinstance(result, int):
        return result
    return 0


def _handled(err: Exception, args: list[str], sigint_seen: bool, unexpected: Any) -> int:
    """The exit code for `err`, its one line written to stderr (stdout for help asked by no arguments)."""
    if isinstance(err, typer.Abort) and (sigint_seen or isinstance(err.__context__, KeyboardInterrupt)):
        sys.stderr.write("gpudoctor: interrupted\n")
        return EXIT_INTERRUPTED
    if isinstance(err, click_exc.NoArgsIsHelpError):
        sys.stdout.write(err.format_message() + "\n")
        return 0
    if isinstance(err, click_exc.ClickException):
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        sys.stderr.write(f"gpudoctor: error: {err.format_message()}{hint}\n")
        return EXIT_USAGE if isinstance(err, click_exc.UsageError) else err.exit_code
    if isinstance(err, GpudoctorError):
        sys.stderr.write(f"gpudoctor: error: {err}\n")
        return err.exit_code
    if isinstance(err, BrokenPipeError):
        return 0
    sys.stderr.write(unexpected(err, args))
    return EXIT_PROBLEM


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))
