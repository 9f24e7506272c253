"""Parsers of files and tool output meet whatever a machine prints: they never raise."""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.probe.amd import parse_rocminfo, rocminfo_error
from gpudoctor.probe.host import parse_meminfo, parse_os_release
from gpudoctor.probe.live import parse_output
from gpudoctor.probe.pci import parse_uevent

LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_raise(text):
    parse_rocminfo(text)
    assert rocminfo_error(text)
    parse_meminfo(text)
    parse_os_release(text)
    parse_uevent(text)
    parse_output(text)


@settings(max_examples=200, deadline=None)
@given(LINE)
def test_os_release_values_survive_shell_quoting(value):
    assert parse_os_release(f"PRETTY_NAME={shlex.quote(value)}\n")["PRETTY_NAME"] == value


def test_os_release_with_a_broken_quote_keeps_the_text():
    assert parse_os_release('NAME="Ubuntu\nID=ubuntu\n') == {"NAME": "Ubuntu", "ID": "ubuntu"}
