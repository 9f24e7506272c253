"""The command-line shell: parse flags, call one layer function, render, map errors to exit codes."""
