"""Atomic writes: whole or absent, and with the mode a plain open() would give under the user's umask."""

from __future__ import annotations

import os
import stat

import pytest

from gpudoctor.atomic import write_json, write_text


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_text(tmp_path / "report.json", "{}")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
    assert os.umask(old) == old  # reading the umask left it as it was


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    write_json(tmp_path / "x.json", {"old": True})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_json(tmp_path / "x.json", {"new": True})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").read_text() == '{\n  "old": true\n}\n'
