"""The CLI's last resort (gpudoctor/cli/main.py::run, gpudoctor/cli/last_resort.py): an exception nobody
expected is one line naming what failed plus a log file with the traceback, exit 1; the traceback is on
stderr only with GPUDOCTOR_DEBUG=1; an interrupt is exit 130 only when one happened (an EOFError, which
click would have turned into Abort, is an error; a real SIGINT is an interrupt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer

from gpudoctor.cli import main

LINE = "gpudoctor: error: gpudoctor boom failed unexpectedly"


def app_raising(err: BaseException) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command("boom")
    def boom() -> None:
        raise err

    @app.command("calm")
    def calm() -> None:
        pass

    return app


@pytest.fixture
def raising(monkeypatch, cli):
    """raising(err) -> the CliResult of `gpudoctor boom`, whose command raises `err`."""

    def invoke(err: BaseException):
        monkeypatch.setattr(main, "build_app", lambda: app_raising(err))
        return cli("boom")

    return invoke


def logs(cli_env: Path) -> list[Path]:
    return sorted((cli_env / "xdg-cache" / "gpudoctor" / "logs").glob("error-*.log"))


def one_line(result) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_an_unexpected_error_is_one_line_and_a_log(raising, cli_env):
    result = raising(RuntimeError("the disk said no\nand a second line"))
    assert result.exit_code == 1
    line = one_line(result)
    (log,) = logs(cli_env)
    assert line == f"{LINE} (RuntimeError: the disk said no); details in {log}"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "and a second line" in text and "command: gpudoctor boom" in text
    assert result.stdout == ""


def test_gpudoctor_debug_prints_the_traceback_too(raising, cli_env, monkeypatch):
    monkeypatch.setenv("GPUDOCTOR_DEBUG", "1")
    result = raising(ValueError("odd"))
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "ValueError: odd" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{LINE} (ValueError: odd); details in ")


@pytest.mark.parametrize("err", [EOFError("Ran out of input"), EOFError()], ids=["message", "bare"])
def test_an_eof_error_is_an_error_not_an_interrupt(raising, cli_env, err):
    result = raising(err)
    assert result.exit_code == 1
    line = one_line(result)
    assert "interrupted" not in line and "(EOFError" in line and len(logs(cli_env)) == 1


def test_an_abort_no_signal_caused_is_an_error(raising):
    try:
        raise EOFError("Ran out of input")
    except EOFError:
        try:
            raise typer.Abort()
        except typer.Abort as abort:
            err = abort
    result = raising(err)
    assert result.exit_code == 1 and "interrupted" not in one_line(result)


def test_a_keyboard_interrupt_is_an_interrupt(raising, cli_env):
    result = raising(KeyboardInterrupt())
    assert result.exit_code == 130
    assert result.stderr == "gpudoctor: interrupted\n"
    assert logs(cli_env) == []


def test_an_unwritable_cache_still_gives_one_line(raising, cli_env, monkeypatch):
    blocker = cli_env / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    result = raising(RuntimeError("x"))
    assert result.exit_code == 1
    assert "details not saved" in one_line(result) and "GPUDOCTOR_DEBUG=1" in result.stderr


def test_expected_errors_and_usage_are_unchanged(cli, monkeypatch):
    from gpudoctor.errors import BadInput

    monkeypatch.setattr(main, "build_app", lambda: app_raising(BadInput("data.json: record 3 has no output")))
    assert (cli("boom").exit_code, cli("boom").stderr) == (2, "gpudoctor: error: data.json: record 3 has no output\n")
    assert cli("calm").exit_code == 0
    result = cli("boom", "--nope")
    assert result.exit_code == 2 and one_line(result).startswith("gpudoctor: error: No such option")


def test_a_real_command_names_where_in_gpudoctor_it_failed(cli, cli_env, monkeypatch, tmp_path):
    import gpudoctor.train.generate as generate

    def damaged(*args, **kwargs):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(generate, "load_chatbot", damaged)
    result = cli("chat", "--adapter", tmp_path, "--prompt", "hi")
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith("gpudoctor: error: gpudoctor chat failed unexpectedly in gpudoctor/cli/chat.py:")
    assert "(EOFError: Ran out of input); details in " in line and "interrupted" not in line


SLEEPER = textwrap.dedent(
    """
    import sys, time, typer
    from gpudoctor.cli import main
    app = typer.Typer(add_completion=False)

    @app.command("wait")
    def wait():
        print("ready", flush=True)
        time.sleep(60)  # a library call the Ctrl-C lands in

    @app.command("other")
    def other():
        pass

    main.build_app = lambda: app
    sys.exit(main.run(["wait"]))
    """
)


def test_a_real_sigint_is_exit_130(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr == "gpudoctor: interrupted\n"
    assert not (tmp_path / "cache").exists()
