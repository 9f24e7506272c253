"""The `gpudoctor` command: joins the command modules and turns errors into one line and an exit code.

Each command module exposes `register(app)`; none may import torch or transformers at import time.
"""

from __future__ import annotations

import importlib
import sys

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from gpudoctor import __version__
from gpudoctor.errors import EXIT_INTERRUPTED, EXIT_USAGE, GpudoctorError

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "gpudoctor.cli.check",
    "gpudoctor.cli.plan",
    "gpudoctor.cli.train",
    "gpudoctor.cli.chat",
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
    """Run the CLI on `argv` and return the exit code; every error becomes one line on stderr."""
    app = build_app()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="gpudoctor", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("gpudoctor: interrupted\n")
        return EXIT_INTERRUPTED
    except typer.Exit as err:
        return err.exit_code
    except click_exc.NoArgsIsHelpError as err:
        sys.stdout.write(err.format_message() + "\n")
        return 0
    except click_exc.ClickException as err:
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        sys.stderr.write(f"gpudoctor: error: {err.format_message()}{hint}\n")
        return EXIT_USAGE if isinstance(err, click_exc.UsageError) else err.exit_code
    except GpudoctorError as err:
        sys.stderr.write(f"gpudoctor: error: {err}\n")
        return err.exit_code
    except BrokenPipeError:
        return 0
    if isinstance(result, int):
        return result
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))
