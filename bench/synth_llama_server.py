"""`data synth --endpoint --inputs-only` end to end against llama.cpp's own OpenAI-compatible server.

Run: .venv/bin/python bench/synth_llama_server.py --gguf MODEL.gguf [-n 40] [--kill-after 12]
Needs llama-cpp-python with its server extra in this Python (`pip install 'llama-cpp-python[server]'`);
it is not a gpudoctor dependency. MODEL.gguf is any chat model; the figures in the README are for the
random-weight demo model (~/.cache/gpudoctor/demo-model with gpudoctor's Alpaca chat template, converted
to f16 by llama.cpp's convert_hf_to_gguf.py as `gpudoctor export` runs it), whose replies are never JSON
(hence --inputs-only).

What it does, each step timed, in a temp folder:
 1. starts `python -m llama_cpp.server --model MODEL.gguf` on 127.0.0.1 and waits for /v1/models;
 2. runs `gpudoctor data synth --inputs-only -n N -o out.jsonl` imitating the shipped demo data and
    kills it with SIGKILL once the output holds --kill-after records;
 3. runs the same command again; when it has made --restart-after more, the server is killed and
    started again under it (the synth rides that out with its retries, or stops with one line);
 4. runs the same command again until the output holds N records (a no-op if step 3 finished);
 5. asks the same server for whole JSON records (no --inputs-only, -n 2): a model that never writes
    JSON must end in one line, exit 1, and no file;
 6. points synth at a port nothing listens on: one line, exit 1, and how long that took.
Then prints the records each run made, the total, exact duplicates (normalised text: must be 0),
whether run 1's records are still the file's first ones, the retries the runs reported, and times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.data.dedupe import normalise  # noqa: E402
from gpudoctor.data.load import load_dataset  # noqa: E402

DEMO_DATA = REPO / "gpudoctor" / "demo" / "support.json"
RETRY_LINE = re.compile(r"^(?P<reason>.+): try \d+ of \d+ in [\d.]+ s$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(gguf: Path, port: int, log: Path, n_ctx: int) -> tuple[subprocess.Popen, float]:
    """llama.cpp's server on 127.0.0.1:port, and the seconds until /v1/models answered."""
    started = time.monotonic()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "demo",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    server = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = started + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"llama_cpp.server exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as answer:
                json.loads(answer.read())
            return server, time.monotonic() - started
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"llama_cpp.server did not answer on port {port} within 180 s; see {log}")


def stop(process: subprocess.Popen, how: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def saved(out: Path) -> int:
    """Records in the output now; it must load whenever it is there (never half-written)."""
    return len(load_dataset(out).records) if out.exists() and out.stat().st_size else 0


def synth_command(args: argparse.Namespace, examples: Path, out: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "gpudoctor", "data", "synth", "--examples", str(examples), "-n", str(args.n), "-o", str(out),
            "--endpoint", f"http://127.0.0.1:{port}/v1", "--model", "demo", "--inputs-only", "--max-tokens", str(args.max_tokens),
            "--timeout", str(args.timeout), "--seed", "1"]


def run_synth(command: list[str], out: Path, stop_at: int | None = None, when_there: object = None) -> dict:
    """One synth run; with `stop_at`, `when_there(process)` is called once the output holds that many records."""
    before, started = saved(out), time.monotonic()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    fired = False
    while process.poll() is None:
        if stop_at is not None and not fired and saved(out) >= stop_at:
            when_there(process)  # type: ignore[operator]
            fired = True
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    retries = Counter(m["reason"] for line in stderr.splitlines() if (m := RETRY_LINE.match(line.strip())))
    last = next((line for line in reversed(stderr.splitlines()) if line.startswith("gpudoctor:")), "")
    return {"made": saved(out) - before, "seconds": time.monotonic() - started, "exit": process.returncode,
            "retries": retries, "line": last, "stdout": stdout.strip().splitlines()}


def examples_file(folder: Path, count: int) -> Path:
    records = json.loads(DEMO_DATA.read_text(encoding="utf-8"))[:count]
    path = folder / "examples.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the model for llama.cpp's server")
    parser.add_argument("-n", type=int, default=40, help="records to make in all")
    parser.add_argument("--kill-after", type=int, default=12, help="SIGKILL run 1 when the output holds this many")
    parser.add_argument("--restart-after", type=int, default=8, help="restart the server when run 2 has made this many")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="copy the output and the server log here")
    args = parser.parse_args()
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        sys.exit("needs llama-cpp-python with its server extra in this Python: pip install 'llama-cpp-python[server]'")
    if not args.gguf.is_file():
        sys.exit(f"--gguf {args.gguf}: no such file; export one with `gpudoctor export --model DIR --gguf -o FILE.gguf`")

    with tempfile.TemporaryDirectory(prefix="synth-llama-") as scratch:
        folder = Path(scratch)
        examples, out, log, port = examples_file(folder, 8), folder / "out.jsonl", folder / "server.log", free_port()
        server, first_start = start_server(args.gguf.resolve(), port, log, args.n_ctx)
        command = synth_command(args, examples, out, port)
        restarts: list[float] = []
        try:
            run1 = run_synth(command, out, args.kill_after, lambda p: p.send_signal(signal.SIGKILL))
            after1 = load_dataset(out).records

            def restart(_process: subprocess.Popen) -> None:
                nonlocal server
                stop(server, signal.SIGKILL)
                server, took = start_server(args.gguf.resolve(), port, log, args.n_ctx)
                restarts.append(took)

            run2 = run_synth(command, out, len(after1) + args.restart_after, restart)
            run3 = run_synth(command, out)
            json_out = folder / "whole.json"
            whole = [part for part in command if part != "--inputs-only"]
            whole[whole.index(str(out))] = str(json_out)
            whole[whole.index("-n") + 1] = "2"
            json_run = run_synth(whole, json_out)
            json_run["file"] = json_out.exists()
        finally:
            stop(server)
        final = load_dataset(out).records
        texts = [normalise(r.alpaca.instruction if r.alpaca else r.messages[0].content) for r in final]
        down = [part.replace(f":{port}/", f":{free_port()}/") for part in command]
        down[down.index(str(out))] = str(folder / "down.jsonl")
        down_run = run_synth(down, folder / "down.jsonl")
        report(args, first_start, restarts, [run1, run2, run3], len(after1), final, texts, after1)
        print(f"JSON path        exit {json_run['exit']}, file written: {json_run['file']}, in {json_run['seconds']:.1f} s: {json_run['line']}")
        print(f"unreachable      exit {down_run['exit']} after {down_run['seconds']:.1f} s: {down_run['line']}")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in (out, log, examples):
                (args.keep / path.name).write_bytes(path.read_bytes())


def report(args, first_start, restarts, runs, kept1, final, texts, after1) -> None:
    print(f"model            {args.gguf.name} ({args.gguf.stat().st_size / 1e6:.1f} MB), llama_cpp.server, --max-tokens {args.max_tokens}")
    print(f"server start     {first_start:.1f} s" + (f"; restarted mid-run 2 in {restarts[0]:.1f} s" if restarts else ""))
    labels = ["run 1 (SIGKILL)", "run 2 (server restart)", "run 3 (finish)"]
    for label, run in zip(labels, runs):
        rate = run["made"] / run["seconds"] if run["seconds"] else 0.0
        retries = " · ".join(f"{k} {v}" for k, v in run["retries"].items()) or "none"
        print(f"{label:<23}  made {run['made']:>3} in {run['seconds']:6.1f} s ({rate:.2f}/s), exit {run['exit']}, retries: {retries}")
        if run["line"]:
            print(f"{'':<25}{run['line']}")
        for line in run["stdout"]:
            if line.startswith(("wrote", "rejected", "retried")):
                print(f"{'':<25}{line}")
    prefix = [normalise(r.alpaca.instruction if r.alpaca else r.messages[0].content) for r in after1] == texts[:kept1]
    duplicates = sum(count - 1 for count in Counter(texts).values() if count > 1)
    print(f"records          {len(final)} of {args.n} (run 1 kept {kept1}; still the file's first {kept1}: {prefix})")
    print(f"duplicates       {duplicates} (exact, normalised text)")
    print(f"retries seen     {sum(sum(run['retries'].values()) for run in runs)}")
    print(f"total synth time {sum(run['seconds'] for run in runs):.1f} s")
    print(f"sample reply     {final[-1].messages[0].content[:100]!r}")


if __name__ == "__main__":
    main()
