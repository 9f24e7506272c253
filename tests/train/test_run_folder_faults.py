"""The run folder's guards (issue 12): every output problem is one line before the model loads, a failed
start does not poison the folder, one run per folder (the lock), --resume only on the data it was, and
the disk space up front. Each case asserts the exit code, one error line with no traceback, and that
nothing was written or lost (the folder byte for byte as before, or not created at all)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gpudoctor.train import runfolder
from gpudoctor.train.runfolder import DATA_RECORD, LOCK_NAME

TRAIN = ("--skip-check", "--seq-len", "256", "--micro-batch", "2", "--grad-accum", "1", "--lora-r", "8", "--seed", "7", "--lr", "5e-3")


@pytest.fixture(autouse=True)
def wide(cli_env, monkeypatch):
    """Console lines unwrapped, so a test can look for one whole."""
    monkeypatch.setenv("COLUMNS", "1000")


def one_error_line(result) -> str:
    """The error is the last line of stderr, the only one of its kind, with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("gpudoctor: error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (dot files too) and its sha256: what "unchanged" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_args(tiny_model, data, out, *more) -> list:
    return ["train", "--model", tiny_model, "--data", data, "--output", out, *TRAIN, *more]


@pytest.fixture(scope="module")
def finished_once(tiny_model, tiny_config, support_records, tmp_path_factory):
    """One finished 2-step run with checkpoint-2, trained once for the module (the CLI's settings)."""
    import io

    from rich.console import Console

    from gpudoctor.train.run import train

    root = tmp_path_factory.mktemp("finished")
    data = root / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    train(tiny_config(tiny_model, data, root / "out", max_steps=2, save_steps=2), console=Console(file=io.StringIO()))
    return root


@pytest.fixture
def finished(finished_once, tmp_path):
    """A copy of the finished run for one test: out, data (run.yaml and run-data.json name the copy's data)."""
    import shutil

    from gpudoctor.plan.runconfig import read_run_config, write_run_config

    out, data = tmp_path / "out", tmp_path / "support.json"
    shutil.copytree(finished_once / "out", out)
    shutil.copy(finished_once / "support.json", data)
    config = read_run_config(out / "run.yaml")
    write_run_config(replace(config, data=str(data), output=str(out)), out / "run.yaml")
    record = json.loads((out / DATA_RECORD).read_text())
    (out / DATA_RECORD).write_text(json.dumps({**record, "data": str(data.resolve())}))
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / LOCK_NAME).exists()
    return out, data


# 1. Output problems: one line, exit 2, before the model loads, nothing written.


def test_output_under_a_file_is_one_line(cli, tiny_model, support_data, tmp_path):
    other = tmp_path / "notes.json"
    other.write_text("{}")
    result = cli(*train_args(tiny_model, support_data, other / "run", "--max-steps", "2"))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"lies under {other}, which is a file" in line
    assert other.read_text() == "{}"


def test_output_that_is_the_data_file_is_refused(cli, tiny_model, support_data, tmp_path):
    before = support_data.read_bytes()
    result = cli(*train_args(tiny_model, support_data, support_data, "--max-steps", "2"))
    assert result.exit_code == 2
    assert "is the --data file" in one_error_line(result)
    assert support_data.read_bytes() == before


def test_data_inside_the_output_folder_is_refused(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    data = out / "train.json"
    data.write_bytes(support_data.read_bytes())
    before = snapshot(out)
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "2"))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"--data {data} lies inside --output {out}" in line
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["train.json"]


@pytest.mark.parametrize(
    ("code", "needle"),
    [(errno.EROFS, "is on a read-only file system"), (errno.EACCES, "is not writable (permission denied)"), (errno.EIO, "cannot write in")],
)
@pytest.mark.parametrize("exists", [True, False], ids=["existing-folder", "new-folder"])
def test_unwritable_output_is_one_line_before_the_model_loads(cli, tiny_model, support_data, tmp_path, monkeypatch, code, needle, exists):
    """EROFS/EACCES/EIO injected at the probe write (tests cannot mount a read-only file system)."""
    from gpudoctor.train import run

    out = tmp_path / "parent" / "out"
    (out if exists else out.parent).mkdir(parents=True)
    probed = []

    def refuse(folder):
        probed.append(folder)
        raise OSError(code, os.strerror(code), str(folder))

    monkeypatch.setattr(runfolder, "probe_write", refuse)
    monkeypatch.setattr(run, "build_model", lambda *a, **k: pytest.fail("the model loaded"))
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert needle in line and f"--output {out}" in line
    assert probed == [out if exists else out.parent]  # the folder itself, or its nearest existing ancestor
    assert out.exists() == exists and (not exists or not any(out.iterdir()))


def test_read_only_folder_for_real(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            (out / "x").write_text("x")
            (out / "x").unlink()
            pytest.skip("this user writes into a folder without write permission (root)")
        except PermissionError:
            pass
        result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))
        assert result.exit_code == 2
        assert f"--output {out}: the folder is not writable (permission denied)" in one_error_line(result)
        assert not any(out.iterdir())
    finally:
        out.chmod(0o755)


def test_the_probe_leaves_nothing_behind(tmp_path):
    runfolder.check_writable(tmp_path / "new" / "run")
    assert list(tmp_path.iterdir()) == []
    runfolder.check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []


# 2. A failed start does not poison the folder.


def test_a_failed_start_is_replaced_by_the_corrected_command(cli, tiny_model, support_data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("GPUDOCTOR_INJECT_OOM_AT_STEP", "1")  # at micro batch 1 there is nothing to back off to
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2", "--micro-batch", "1"))
    assert result.exit_code == 1 and "out of memory at step 1" in one_error_line(result)
    assert (out / "run.yaml").is_file() and not (out / LOCK_NAME).exists()
    monkeypatch.delenv("GPUDOCTOR_INJECT_OOM_AT_STEP")
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))  # micro batch 2: another config
    assert result.exit_code == 0, result.stderr
    assert f"--output {out}: replacing a failed start" in result.stderr
    assert "micro_batch: 2" in (out / "run.yaml").read_text()
    assert (out / "adapter_model.safetensors").is_file()


def test_a_trained_run_is_still_not_replaced(cli, tiny_model, finished):
    out, data = finished
    before = snapshot(out)
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "2", "--lr", "1e-4"))
    assert result.exit_code == 2
    assert f"--output {out}: holds a different run (" in one_error_line(result)
    assert snapshot(out) == before


# 3. The lock: one run per folder.


def write_lock(out: Path, **holder) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    value = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+0000", "token": "theirs", **holder}
    (out / LOCK_NAME).write_text(json.dumps(value))
    return (out / LOCK_NAME).read_bytes()


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def test_a_live_holder_stops_a_second_run(cli, tiny_model, finished, sleeper):
    out, data = finished
    lock = write_lock(out, pid=sleeper.pid)
    before = snapshot(out)
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "4", "--resume"))
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"another run (pid {sleeper.pid} on {socket.gethostname()}" in line and "is training into this folder" in line
    assert snapshot(out) == before and (out / LOCK_NAME).read_bytes() == lock


def test_a_lock_from_another_host_is_not_taken_over(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    lock = write_lock(out, pid=4242, host="elsewhere.example")
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "locked by a run on host elsewhere.example (pid 4242" in line and f"delete {out / LOCK_NAME}" in line
    assert (out / LOCK_NAME).read_bytes() == lock and [p.name for p in out.iterdir()] == [LOCK_NAME]


def test_a_stale_lock_is_taken_over_and_released(cli, tiny_model, support_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    write_lock(out, pid=dead.pid)
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))
    assert result.exit_code == 0, result.stderr
    assert f"taking over the stale lock {LOCK_NAME} (pid {dead.pid} on {socket.gethostname()} is no longer running)" in result.stderr
    assert not (out / LOCK_NAME).exists() and (out / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    ("recorded", "now", "reason"),
    [
        ({"boot_id": "before"}, {"_boot_id": "after"}, "ran before this machine restarted"),
        ({"proc_start": "100"}, {"_proc_start": "200"}, "is now another process"),
    ],
)
def test_a_live_pid_that_is_not_the_holder_is_stale(tmp_path, monkeypatch, recorded, now, reason):
    """A reboot or a reused pid (a power cut, then another process under the same number) frees the lock."""
    for name, value in now.items():
        monkeypatch.setattr(runfolder, name, lambda *args, value=value: value)
    write_lock(tmp_path, **recorded)  # our own pid: alive
    assert runfolder.stale_reason(tmp_path / LOCK_NAME, tmp_path) == f"pid {os.getpid()} {reason}"
    lock = runfolder.acquire_lock(tmp_path, lambda line: None)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.token
    runfolder.release_lock(lock)
    assert list(tmp_path.iterdir()) == []  # tmp_path existed before: kept, only the lock is gone


def test_an_unreadable_lock_is_held_while_young_and_stale_when_old(tmp_path):
    from gpudoctor.errors import ProblemFound

    lock = tmp_path / LOCK_NAME
    lock.write_bytes(b"")  # created (O_EXCL) but not yet written, or cut short by a crash
    with pytest.raises(ProblemFound, match="another run is taking the lock"):
        runfolder.stale_reason(lock, tmp_path)
    old = time.time() - 2 * runfolder.UNREADABLE_LOCK_STALE_S
    os.utime(lock, (old, old))
    assert runfolder.stale_reason(lock, tmp_path).startswith("an unreadable lock file")


def test_an_error_after_the_lock_releases_it_and_leaves_no_folder(cli, tiny_model, support_data, tmp_path, monkeypatch):
    from gpudoctor.errors import BadInput
    from gpudoctor.train import run

    def broken(*args, **kwargs):
        assert (tmp_path / "new" / "out" / LOCK_NAME).is_file()  # held while the model loads
        raise BadInput("the model folder is broken")

    monkeypatch.setattr(run, "build_model", broken)
    result = cli(*train_args(tiny_model, support_data, tmp_path / "new" / "out", "--max-steps", "2"))
    assert result.exit_code == 2 and one_error_line(result).endswith("the model folder is broken")
    assert not (tmp_path / "new").exists()  # the folders the lock made are gone again


def start_run(tiny_model, data, out, *more) -> subprocess.Popen:
    command = [sys.executable, "-m", "gpudoctor", *map(str, train_args(tiny_model, data, out, *more))]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_runs_at_once_then_sigint_releases_the_lock(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    first = start_run(tiny_model, support_data, out, "--max-steps", "5000", "--save-steps", "10000")
    try:
        wait_for(lambda: (out / "run.yaml").is_file(), first)  # locked, model loaded, training
        result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "5000", "--save-steps", "10000"))
        assert result.exit_code == 1
        assert f"another run (pid {first.pid} on {socket.gethostname()}" in one_error_line(result)
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, stderr
    assert not (out / LOCK_NAME).exists()


def test_sigkill_leaves_a_stale_lock_the_same_command_takes_over(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    first = start_run(tiny_model, support_data, out, "--max-steps", "5000", "--save-steps", "10000")
    try:
        wait_for(lambda: (out / "run.yaml").is_file() and (out / DATA_RECORD).is_file(), first)
    finally:
        first.kill()
        first.wait()
    assert (out / LOCK_NAME).is_file()
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2", "--save-steps", "1000"))
    assert result.exit_code == 0, result.stderr
    assert f"pid {first.pid} on {socket.gethostname()} is no longer running" in result.stderr
    assert "replacing a failed start" in result.stderr  # killed before its first checkpoint
    assert not (out / LOCK_NAME).exists() and (out / "adapter_model.safetensors").is_file()


# 4. Resume only what it was.


def test_resume_on_changed_data_is_refused_then_allowed_explicitly(cli, tiny_model, finished):
    out, data = finished
    records = json.loads(data.read_text())
    data.write_text(json.dumps(records[::-1][:40]))  # other records, in another order, under the same name
    before = snapshot(out)
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "4", "--resume"))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"{data.resolve()} changed since the run started (sha256" in line and "--resume-changed-data" in line
    assert snapshot(out) == before
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "4", "--resume", "--resume-changed-data"))
    assert result.exit_code == 0, result.stderr
    assert "the epoch restarts on the new data" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and report["steps"] == 4
    assert json.loads((out / DATA_RECORD).read_text())["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("--seed", "8"), "the data or its order changed (training.seed: 7 there, 8 now)"),
        (("--truncate",), "truncate False then, True now"),
    ],
)
def test_resume_with_another_data_order_is_refused(cli, tiny_model, finished, change, needle):
    out, data = finished
    before = snapshot(out)
    result = cli(*train_args(tiny_model, data, out, "--max-steps", "4", "--resume", *change))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert needle in line and "--resume-changed-data" in line
    assert snapshot(out) == before


def test_resume_changed_data_needs_resume(cli, tiny_model, support_data, tmp_path):
    result = cli(*train_args(tiny_model, support_data, tmp_path / "out", "--max-steps", "2", "--resume-changed-data"))
    assert result.exit_code == 2
    assert "--resume-changed-data goes with --resume" in one_error_line(result)
    assert not (tmp_path / "out").exists()


# 5. Disk space up front.


class Usage:
    def __init__(self, free: int) -> None:
        self.total, self.used, self.free = free * 2, free, free


@pytest.mark.parametrize("known", [True, False], ids=["from-the-config", "from-the-built-model"])
def test_too_little_disk_space_is_one_line_and_nothing_written(cli, tiny_model, support_data, tmp_path, monkeypatch, known):
    from gpudoctor.train import run

    asked = []
    monkeypatch.setattr(runfolder, "disk_usage", lambda path: asked.append(Path(path)) or Usage(300_000))
    if not known:  # the memory model cannot read the model: the check counts the built adapter instead
        monkeypatch.setattr(run, "judged_against", lambda *args: (None, None))
    else:
        monkeypatch.setattr(run, "build_model", lambda *a, **k: pytest.fail("the model loaded"))
    out = tmp_path / "out"
    result = cli(*train_args(tiny_model, support_data, out, "--max-steps", "2"))
    assert result.exit_code == 1
    line = one_error_line(result)
    where = tmp_path if known else out  # after the model loaded the lock has made the folder (and removes it again)
    assert f"--output {out}: the run needs about" in line and f"but {where} has 293.0 KiB free" in line
    assert asked == [where] and not out.exists()


def test_the_estimate_covers_a_real_checkpoint(finished):
    """19,456 LoRA parameters (r 8 on every linear of the tiny model), AdamW: the estimate is at least
    what a checkpoint weighs and less than six times it (1 MiB of it is the fixed allowance); an 8-bit
    optimizer's checkpoint about half an fp32 AdamW's."""
    out, _ = finished
    real = sum(p.stat().st_size for p in (out / "checkpoints" / "checkpoint-2").rglob("*") if p.is_file())
    estimate = runfolder.checkpoint_bytes(19_456, "adamw_torch")
    assert real <= estimate < 6 * real
    assert runfolder.checkpoint_bytes(40_000_000, "adamw_torch") > 1.9 * runfolder.checkpoint_bytes(40_000_000, "paged_adamw_8bit")  # 4 + 8 against 4 + 2 bytes a parameter


@pytest.mark.parametrize(("steps", "saved"), [("2", "1 checkpoint of"), ("6", "3 checkpoints of"), ("10", "4 checkpoints of")])
def test_the_space_line_counts_the_checkpoints_the_run_keeps(tiny_model, tiny_config, support_data, tmp_path, steps, saved):
    """Every 2 steps and at the end, at most save_total_limit (3) + the one being written."""
    from gpudoctor.train.run import prepare

    prepared = prepare(tiny_config(tiny_model, support_data, tmp_path / "out", max_steps=int(steps)))
    assert prepared.said[-1].startswith("disk: the run writes up to") and saved in prepared.said[-1]
    assert not (tmp_path / "out").exists()
