"""`gpudoctor pull` against a local stand-in for the Hugging Face Hub (127.0.0.1, never the real hub).

The stand-in serves what huggingface_hub 2.x asks for: model_info with file sizes
(GET /api/models/{repo}/revision/{rev}), the file list (GET /api/models/{repo}/tree/{sha}) and the
files themselves (HEAD/GET /{repo}/resolve/{rev}/{file}, with ETag, X-Repo-Commit, X-Linked-Size,
Content-Length and Range). Each case runs the real CLI in a subprocess with HF_ENDPOINT pointed at
it, so huggingface_hub reads its environment (HF_HUB_CACHE, HF_HUB_OFFLINE) as it does for a user.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SHA = "0123456789abcdef0123456789abcdef01234567"
WEIGHTS = bytes(range(256)) * 48_000  # 12,288,000 bytes: more than huggingface_hub's 10 MiB read chunk, so a drop past it resumes
FILES = {
    "config.json": b'{"model_type": "mistral", "hidden_size": 64}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": WEIGHTS,
    "pytorch_model.bin": b"pickle" * 500_000,  # never fetched
    "model.pt": b"pickle",
    "README.md": b"# tiny",
    "original/consolidated.safetensors": b"x" * 100,
}
LFS = {"model.safetensors", "pytorch_model.bin", "original/consolidated.safetensors"}
FETCHED = {"config.json", "tokenizer.json", "model.safetensors"}


class Hub:
    """What the stand-in answers, per repo, and every request it saw."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop_after: dict[str, int] = {}  # file -> close the connection after this many bytes (once)
        self.fail_once: dict[str, int] = {}  # file -> answer this status once to its GET
        self.fail_always: dict[str, int] = {}  # file -> answer this status to every GET
        self.lock = threading.Lock()

    def file_requests(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if "/resolve/" in r[1]]


def _oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(name: str) -> dict:
    data = FILES[name]
    entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
    if name in LFS:
        entry["lfs"] = {"oid": _oid(data), "size": len(data), "pointerSize": 134}
    return entry


def _handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, status: int, body, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path = unquote(urlsplit(self.path).path)
            with hub.lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
            repo_match = re.match(r"^/(?:api/models/)?([^/]+/[^/]+)(?:/|$)", path)
            repo = repo_match.group(1) if repo_match else ""
            if repo == "org/missing":
                return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            if repo == "org/private":
                return self._json(403, {"error": "forbidden"}, {"X-Error-Message": "Access to this resource is forbidden"})
            if repo not in ("org/tiny", "org/gated"):
                return self._json(404, {"error": "unexpected"})
            if path == f"/api/models/{repo}" or path.startswith(f"/api/models/{repo}/revision/"):
                siblings = [{"rfilename": n, "size": e["size"], "blobId": e["oid"], **({"lfs": {"size": e["size"], "sha256": e["lfs"]["oid"], "pointerSize": 134}} if "lfs" in e else {})}
                            for n, e in ((n, _entry(n)) for n in FILES)]  # fmt: skip
                return self._json(200, {"id": repo, "sha": SHA, "private": False, "gated": "manual" if repo == "org/gated" else False, "siblings": siblings})
            if path.startswith(f"/api/models/{repo}/tree/"):
                return self._json(200, [_entry(n) for n in FILES])
            if f"/{repo}/resolve/" in path:
                if repo == "org/gated":
                    return self._json(401, {"error": "gated"}, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model org/gated is restricted."})
                return self._file(path.split("/resolve/", 1)[1].split("/", 1)[1])
            return self._json(404, {"error": "unexpected"})

        def _file(self, name: str) -> None:
            if name not in FILES:
                return self._json(404, {"error": "no such file"}, {"X-Error-Code": "EntryNotFound"})
            data, entry = FILES[name], _entry(name)
            if self.command == "GET" and (hub.fail_once.get(name) or hub.fail_always.get(name)):
                return self._json(hub.fail_once.pop(name, None) or hub.fail_always[name], {"error": "server error"})
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range") or "bytes=0-").group(1))
            self.send_response(206 if start else 200)
            headers = {"ETag": f'"{etag}"', "X-Repo-Commit": SHA, "Content-Length": str(len(data) - start), "Accept-Ranges": "bytes"}
            if "lfs" in entry:
                headers["X-Linked-Size"], headers["X-Linked-Etag"] = str(len(data)), f'"{etag}"'
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = hub.drop_after.pop(name, None) if self.command == "GET" else None
            if cut is not None:  # the connection drops half-way: send part of the body, then close
                self.wfile.write(data[start : start + cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data[start:])

    return Handler


@pytest.fixture
def hub():
    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(tmp_path, hub):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    base.update(
        HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "cache"), HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_COLOR="1", COLUMNS="400", HF_HUB_ETAG_TIMEOUT="5",
    )  # fmt: skip
    return base


def pull(env: dict, *args: str, free: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real CLI in a fresh interpreter (huggingface_hub reads HF_* at import); `free` fakes the disk's free bytes."""
    patch = f"import gpudoctor.train.pull as p; p.free_bytes = lambda folder: {free}\n" if free is not None else ""
    script = f"import sys\n{patch}from gpudoctor.cli.main import run\nsys.exit(run(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", script, "pull", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpudoctor: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _snapshot(env: dict) -> Path:
    return Path(env["HF_HUB_CACHE"]) / "models--org--tiny" / "snapshots" / SHA


def test_pull_fetches_only_weights_config_and_tokenizer(env, hub, monkeypatch):
    result = pull(env, "org/tiny")
    assert result.returncode == 0, result.stderr
    snapshot = _snapshot(env)
    assert {p.name for p in snapshot.iterdir()} == FETCHED
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS
    assert {path.rsplit("/", 1)[1] for method, path, _ in hub.file_requests()} == FETCHED  # no .bin/.pt/README/subfolders
    assert f"in the Hugging Face cache at {snapshot}" in result.stderr
    assert result.stdout == f"{snapshot}\n"  # the folder alone on stdout, for MODEL_DIR=$(gpudoctor pull ...)
    # train's own lookup finds what pull fetched (same patterns, same cache)
    monkeypatch.setenv("HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from gpudoctor.train.model import resolve_model_dir

    assert resolve_model_dir("org/tiny") == snapshot


def test_already_cached_needs_no_network(env, hub):
    assert pull(env, "org/tiny").returncode == 0
    hub.requests.clear()
    offline = pull({**env, "HF_HUB_OFFLINE": "1"}, "org/tiny")
    online = pull(env, "org/tiny")
    for result in (offline, online):
        assert result.returncode == 0, result.stderr
        assert f"already in the Hugging Face cache at {_snapshot(env)}" in result.stderr
    assert hub.requests == []


def test_dropped_connection_resumes_where_it_stopped(env, hub):
    hub.drop_after["model.safetensors"] = 11_000_000
    result = pull(env, "org/tiny")
    assert result.returncode == 0, result.stderr
    assert (_snapshot(env) / "model.safetensors").read_bytes() == WEIGHTS
    ranges = [r for m, p, r in hub.file_requests() if m == "GET" and p.endswith("model.safetensors")]
    assert ranges == [None, "bytes=10485760-"]  # the second request asks only for what is not on disk yet (10 MiB kept)


def test_server_error_mid_download_is_retried_by_pull(env, hub):
    hub.fail_once["model.safetensors"] = 500
    result = pull(env, "org/tiny")
    assert result.returncode == 0, result.stderr
    assert "trying again (1 of 2)" in result.stderr
    assert (_snapshot(env) / "model.safetensors").read_bytes() == WEIGHTS


def test_a_download_that_keeps_failing_stops_after_three_tries_with_one_line(env, hub):
    hub.fail_always["model.safetensors"] = 503
    result = pull(env, "org/tiny")
    assert result.returncode == 1
    line = _one_line(result)
    assert "after 3 tries" in line and "run `gpudoctor pull org/tiny` again" in line
    assert sum(1 for m, p, _ in hub.file_requests() if m == "GET" and p.endswith("model.safetensors")) == 3


def test_train_calls_the_pull_hook_with_its_model_and_yes(cli, monkeypatch):
    from gpudoctor.errors import ProblemFound

    seen = []

    def hook(model, *, yes, console):
        seen.append((model, yes))
        raise ProblemFound("stopped here")

    monkeypatch.setattr("gpudoctor.cli.pull.ensure_pulled", hook)
    result = cli("train", "--demo", "--yes")
    assert result.exit_code == 1 and "stopped here" in result.stderr
    assert len(seen) == 1 and seen[0][1] is True and Path(seen[0][0]).is_dir()


def test_too_little_disk_is_one_line_before_any_file_request(env, hub):
    result = pull(env, "org/tiny", free=1_000_000)
    assert result.returncode == 1
    line = _one_line(result)
    assert "needs 0.01 GiB" in line and "only 0.00 GiB are free" in line and "export HF_HUB_CACHE=/bigger/disk" in line
    assert hub.file_requests() == []
    assert [p for _, p, _ in hub.requests] == ["/api/models/org/tiny"]  # the file list only


def test_disk_check_counts_only_the_files_to_fetch(env, hub):
    # the weights and the two small json files fit; with the 3 MB .bin they would not
    result = pull(env, "org/tiny", free=len(WEIGHTS) + 1_000)
    assert result.returncode == 0, result.stderr


def test_gated_repo_without_a_token_is_refused_before_any_file_request(env, hub):
    result = pull(env, "org/gated")
    assert result.returncode == 1
    line = _one_line(result)
    assert "is gated (manual approval) and you are not logged in" in line
    assert "https://huggingface.co/org/gated" in line and "hf auth login" in line and "HF_TOKEN" in line
    assert hub.file_requests() == []


def test_gated_repo_whose_licence_is_not_accepted_is_one_line_exit_1(env, hub):
    result = pull({**env, "HF_TOKEN": "hf_not_accepted"}, "org/gated")  # logged in; the hub answers 401 GatedRepo to the files
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith("gpudoctor: error: org/gated: is gated; accept its licence at https://huggingface.co/org/gated")
    assert "hf auth login" in line and "HF_TOKEN" in line
    assert any(m == "HEAD" for m, _, _ in hub.file_requests())


def test_forbidden_repo_is_one_line_exit_1(env, hub):
    result = pull(env, "org/private")
    assert result.returncode == 1
    assert "hf auth login" in _one_line(result)


def test_missing_repo_is_one_line_exit_2(env, hub):
    result = pull(env, "org/missing")
    assert result.returncode == 2
    assert "no such model repo" in _one_line(result)


def test_offline_mode_is_one_line_and_no_request(env, hub):
    result = pull({**env, "HF_HUB_OFFLINE": "1"}, "org/tiny")
    assert result.returncode == 1
    assert "HF_HUB_OFFLINE" in _one_line(result)
    assert hub.requests == []


def test_unreachable_hub_is_one_line_without_a_stack_of_retries(env):
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = pull({**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}, "org/tiny", timeout=30)
    assert result.returncode == 1
    assert "cannot reach the Hugging Face Hub" in _one_line(result)
    assert "Retrying" not in result.stderr


def test_profile_id_names_its_hub_repo():
    from gpudoctor.train.pull import hub_id

    assert hub_id("mistral-7b") == "mistralai/Mistral-7B-v0.1"
    assert hub_id("org/tiny") == "org/tiny"


def test_not_a_repo_id_is_bad_input(env):
    result = pull(env, "no-such-profile")
    assert result.returncode == 2
    assert "owner/name" in _one_line(result)


def ensure(env: dict, *, yes: bool, answer: bool) -> subprocess.CompletedProcess:
    """train's hook (ensure_model) in a fresh interpreter, its threshold lowered to 1000 bytes; prints what it was asked."""
    script = (
        "import gpudoctor.train.pull as p\np.ASK_ABOVE = 1000\nasked = []\n"
        f"try:\n    p.ensure_model('org/tiny', yes={yes}, ask=lambda q: asked.append(q) or {answer}, say=print)\n"
        "except Exception as err:\n    print('ERROR', type(err).__name__, err)\nprint('ASKED', asked)\n"
    )
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_train_asks_before_a_big_download_and_a_no_fetches_nothing(env, hub):
    result = ensure(env, yes=False, answer=False)
    assert "ERROR ProblemFound org/tiny: not in the Hugging Face cache and not downloaded (0.0 GiB); pass --yes" in result.stdout
    assert "download 0.0 GiB now?" in result.stdout  # the question names the size
    assert hub.file_requests() == []


def test_train_downloads_after_a_yes_or_with_yes(env, hub):
    result = ensure(env, yes=False, answer=True)
    assert "ERROR" not in result.stdout and (_snapshot(env) / "model.safetensors").read_bytes() == WEIGHTS
    hub.requests.clear()
    again = ensure(env, yes=True, answer=False)  # cached now: nothing asked, nothing fetched
    assert "ASKED []" in again.stdout and hub.requests == []


def test_train_with_yes_never_asks(env, hub):
    result = ensure(env, yes=True, answer=False)
    assert "ASKED []" in result.stdout and "ERROR" not in result.stdout
    assert (_snapshot(env) / "config.json").is_file()


def test_train_has_a_yes_flag_and_no_terminal_means_no(cli, monkeypatch):
    from gpudoctor.cli import pull as cli_pull

    assert "--yes" in cli("train", "--help").stdout
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli_pull._ask("download?") is False


def test_a_partial_cache_fetches_and_counts_only_what_is_missing(env, hub):
    assert pull(env, "org/tiny").returncode == 0
    config = _snapshot(env) / "config.json"
    config.resolve().unlink()  # its blob and its link: as if that file never arrived
    config.unlink()
    hub.requests.clear()
    result = pull(env, "org/tiny", free=1_000)  # room for config.json, nowhere near the weights
    assert result.returncode == 0, result.stderr
    assert config.read_bytes() == FILES["config.json"]
    assert [p.rsplit("/", 1)[1] for m, p, _ in hub.file_requests() if m == "GET"] == ["config.json"]
