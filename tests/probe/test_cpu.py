"""CPU number formats from /proc/cpuinfo: native bf16 only where the instructions exist."""

from __future__ import annotations

from gpudoctor.probe.cpu import cpu_flags, native_bf16_flag

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
SAPPHIRE = "flags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n"


def _root(tmp_path, text):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(text)
    return tmp_path


def test_zen4_has_avx512_bf16(tmp_path):
    root = _root(tmp_path, ZEN4)
    assert "avx2" in cpu_flags(root)
    assert native_bf16_flag(root) == "avx512_bf16"


def test_amx_is_preferred(tmp_path):
    assert native_bf16_flag(_root(tmp_path, SAPPHIRE)) == "amx_bf16"


def test_no_bf16_instructions_means_fp32(tmp_path):
    assert native_bf16_flag(_root(tmp_path, SKYLAKE)) is None


def test_unreadable_cpuinfo_is_no_flags(tmp_path):
    assert cpu_flags(tmp_path) == set() and native_bf16_flag(tmp_path) is None
