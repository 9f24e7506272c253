"""Python environment facts from package metadata, torch's build flavour included."""

from __future__ import annotations

import pytest

from gpudoctor.probe.pyenv import PACKAGES, probe_python, torch_flavour
from gpudoctor.probe.sources import PythonInfo, Sources


@pytest.mark.parametrize(
    ("version", "requires", "flavour"),
    [
        ("2.7.1+cu128", None, "cu128"),
        ("2.8.0+rocm6.4", None, "rocm6.4"),
        ("2.13.0+cpu", None, "cpu"),
        ("2.9.0.dev20250801+cu129", None, "cu129"),
        ("2.7.1", ['nvidia-cuda-runtime-cu12==12.6.77; platform_system == "Linux"'], "cu126"),
        ("2.9.0", ['nvidia-cuda-runtime==13.0.48; platform_system == "Linux"'], "cu130"),
        ("2.7.1", ["filelock", "sympy>=1.13.3"], None),
    ],
)
def test_torch_flavour(version, requires, flavour):
    assert torch_flavour(version, requires) == flavour


def sources(versions, *, broken=()):
    def version(name):
        if name in broken:
            raise ValueError("unreadable METADATA")
        return versions.get(name)

    return Sources(
        package_version=version,
        package_requires=lambda name: [] if name in versions else None,
        python=lambda: PythonInfo("/usr/bin/python3", "3.12.3", False, "system", True),
    )


def test_versions_and_missing_packages():
    facts = probe_python(sources({"torch": "2.8.0+rocm6.4", "bitsandbytes": "0.49.0", "peft": "0.16.0"}))
    assert (facts.executable, facts.version, facts.in_venv) == ("/usr/bin/python3", "3.12.3", False)
    assert (facts.env_kind, facts.externally_managed) == ("system", True)
    assert list(facts.packages) == list(PACKAGES)
    assert (facts.packages["torch"].version, facts.packages["torch"].flavour) == ("2.8.0+rocm6.4", "rocm6.4")
    assert facts.packages["bitsandbytes"].version == "0.49.0"
    assert facts.packages["transformers"].version is None
    assert facts.live is None  # the orchestrator decides about the live check


def test_broken_metadata_is_a_fact():
    facts = probe_python(sources({"torch": "2.7.1+cu128"}, broken={"peft"}))
    assert facts.packages["peft"].error == "ValueError: unreadable METADATA"
    assert facts.packages["torch"].flavour == "cu128"


def test_this_environment_reads_its_real_metadata():
    import importlib.metadata

    facts = probe_python(Sources())
    assert facts.packages["torch"].version == importlib.metadata.version("torch")
    assert (facts.in_venv, facts.env_kind, facts.externally_managed) == (True, "venv", False)  # tests run in .venv


def test_python_headers_come_from_the_python_source():
    import dataclasses

    from machines import fixture_sources

    assert probe_python(fixture_sources("rtx-4090-ubuntu")).python_headers is True
    no_dev = PythonInfo("/usr/bin/python3", "3.12.3", False, "system", True, python_headers=False)  # no python3-dev
    assert probe_python(dataclasses.replace(fixture_sources("rtx-4090-ubuntu"), python=lambda: no_dev)).python_headers is False
    assert probe_python(sources({})).python_headers is None  # a Python that could not tell


def test_python_headers_of_this_interpreter_are_where_sysconfig_says():
    import sysconfig
    from pathlib import Path

    from gpudoctor.probe.sources import python_info

    assert python_info().python_headers == (Path(sysconfig.get_path("include")) / "Python.h").is_file()
