"""`python -m gpudoctor` runs the command-line interface."""

from gpudoctor.cli.main import main

main()
