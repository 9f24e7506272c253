"""The CLI shell: version, help, and usage errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

from gpudoctor import __version__


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"gpudoctor {__version__}"


def test_unknown_command_is_one_line_exit_2(cli):
    result = cli("no-such-command")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "No such command 'no-such-command'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_arguments_prints_help(cli):
    result = cli()
    assert result.exit_code == 0
    assert "Usage: gpudoctor" in result.stdout


def test_importing_the_cli_does_not_import_the_training_stack():
    code = (
        "import sys, gpudoctor.cli.main as m; m.build_app();"
        "print(','.join(x for x in ('torch','transformers','peft','bitsandbytes','accelerate') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
