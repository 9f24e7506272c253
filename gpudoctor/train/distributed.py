"""Several processes through `accelerate launch`: the accelerate config written into the run folder, and the command.

DDP on GPUs, or on the CPU (`--gpu cpu`, or a machine without a GPU) with the gloo backend: the same
path either way. accelerate's multi-process launcher (torchrun) starts one `gpudoctor train` per
process; with `use_cpu: true` each one trains on the CPU, where accelerate picks MULTI_CPU and gloo
(accelerate's own `MULTI_CPU` config type goes through mpirun, which a plain machine lacks).
Rank 0 alone writes the run folder (run.py, runfolder.main_process); the Trainer shards the rows.
Nothing here imports torch.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from gpudoctor.atomic import write_text
from gpudoctor.errors import BadInput

LAUNCH_DIR = ".launch"  # in the run folder; a dot-folder, so the folder's checks (outputdir.check_output) pass it by
CONFIG_NAME = "accelerate.yaml"
RUN_NAME = "run.yaml"  # the run.yaml every process reads (the run folder's own run.yaml is rank 0's)
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def world_size() -> int:
    """How many processes train this run: accelerate launch's WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def strategy_of(settings: Any) -> str:
    """report.json's strategy: single for one process, else the run's ddp or fsdp (ddp when unset)."""
    if settings.gpus <= 1:
        return "single"
    return settings.strategy if settings.strategy in ("ddp", "fsdp") else "ddp"


def free_port() -> int:
    """A TCP port nothing listens on now, for the processes' rendezvous on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_config(processes: int, *, on_cpu: bool, strategy: str, compute_dtype: str, port: int) -> dict[str, Any]:
    """The accelerate config of a one-machine run of `processes` processes (DDP; FSDP-QLoRA on GPUs)."""
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "FSDP" if strategy == "fsdp" and not on_cpu else "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": processes,
        "main_process_ip": "127.0.0.1",
        "main_process_port": port,
        "mixed_precision": "no" if on_cpu else MIXED_PRECISION.get(compute_dtype, "no"),
        "use_cpu": on_cpu,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "debug": False,
    }
    if config["distributed_type"] == "FSDP":
        config["fsdp_config"] = {
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True, "fsdp_offload_params": False,
        }  # fmt: skip
    return config


def write_launch_config(folder: Path, config: dict[str, Any]) -> Path:
    """<folder>/.launch/accelerate.yaml, whole or not at all, with the user's umask (reusable with `accelerate launch --config_file`)."""
    (folder / LAUNCH_DIR).mkdir(parents=True, exist_ok=True)
    return write_text(folder / LAUNCH_DIR / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))


def launch_command(config_file: Path, run_yaml: Path, extra: list[str] | None = None) -> list[str]:
    """`accelerate launch --config_file <it> -m gpudoctor train <run_yaml> --skip-check …` (the check ran in the parent),
    through main() below: accelerate's own launch, with a failed or interrupted process's exit code and no traceback."""
    return [
        sys.executable, "-m", "gpudoctor.train.distributed", "--config_file", str(config_file),
        "-m", "gpudoctor", "train", str(run_yaml), "--skip-check", *(extra or []),
    ]  # fmt: skip


def shown_command(command: list[str]) -> str:
    """The command as a user would type it again: `accelerate launch …`."""
    return " ".join(["accelerate", "launch", *command[3:]])


def run_launcher(command: list[str], env: dict[str, str]) -> int:
    """Run the launcher in a session of its own and pass it this process's SIGINT/SIGTERM once each (torchrun
    hands it to every process, which save at the same step and stop); its exit code (130: interrupted, saved)."""
    import signal
    import subprocess

    process = subprocess.Popen(command, env=env, start_new_session=True)
    previous = {sig: signal.signal(sig, lambda signum, _frame: process.send_signal(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch` (its parser and launch_command); the processes' own one-line errors are the message,
    so a failed process ends this with its exit code (130: interrupted and saved) instead of torchrun's traceback."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    logs = Path(args.config_file).parent / "logs"  # the other ranks' output; the console shows rank 0's (its lines speak for the run)
    processes = int((yaml.safe_load(Path(args.config_file).read_text(encoding="utf-8")) or {}).get("num_processes", 1))
    if processes > 1:
        args.log_dir, args.redirects = str(logs), ",".join(f"{rank}:3" for rank in range(1, processes))
    try:
        accelerate_launch(args)
    except ChildFailedError as err:
        codes = {rank: f.exitcode if f.exitcode >= 0 else 128 - f.exitcode for rank, f in err.failures.items()}
        if not codes.get(0):
            say_other_rank(logs, sorted(codes))
        return 130 if 130 in codes.values() else next((c for c in codes.values() if c), 1)
    except (SignalException, KeyboardInterrupt):
        return 130
    return 0


def summed(value: int) -> int:
    """`value` added over every process (accelerate launch: the real tokens of all ranks); itself in a single process."""
    if world_size() <= 1:
        return value
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def say_other_rank(logs: Path, ranks: list[int]) -> None:
    """A failure of a rank other than 0 (whose console is silent): its own last error line, from its log."""
    for rank in ranks:
        for log in sorted(logs.glob(f"*/attempt_*/{rank}/stderr.log")):
            lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.startswith("gpudoctor: error: ")]
            if lines:
                print(lines[-1].replace("gpudoctor: error: ", f"gpudoctor: error: rank {rank}: ", 1), file=sys.stderr)
                return
    print(f"gpudoctor: error: rank {ranks[0] if ranks else '?'} failed; its output is under {logs}", file=sys.stderr)


def agreed(flag: bool) -> bool:
    """True on every process when it is True on any (accelerate launch: a signal that reached one rank stops all
    at the same step, so the one checkpoint holds every rank's step); the flag itself in a single process."""
    if world_size() <= 1:
        return flag
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def launch_env(on_cpu: bool, processes: int) -> dict[str, str]:
    """The launcher's environment: no GPU visible for a CPU run; the CPU cores shared between the processes."""
    env = dict(os.environ)
    if on_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", str(max(1, cpu_cores() // processes)))
    return env


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity), as many processes as a CPU run may start."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_processes(processes: int, *, on_cpu: bool, gpus_found: int | None) -> None:
    """BadInput when --gpus asks for more processes than devices: GPUs found, or CPU cores for a CPU run
    (a process per core at most; more only wait for each other). `gpus_found` None: not known, not judged."""
    if on_cpu:
        cores = cpu_cores()
        if processes > cores:
            raise BadInput(f"--gpus {processes}: a CPU run starts one process per core at most and {cores} cores are available here; use --gpus {cores} or fewer")
        return
    if gpus_found is not None and processes > gpus_found:
        raise BadInput(f"--gpus {processes}: {gpus_found} GPU{'s' if gpus_found != 1 else ''} found here; use --gpus {max(1, gpus_found)} or fewer (`gpudoctor check` lists them)")


def check_resume_world(folder: Path, processes: int, *, resume: bool) -> None:
    """On --resume: BadInput when the run in `folder` trained with another number of processes
    (its optimizer steps, data shards and checkpoints are for that world size)."""
    if not resume or not (folder / "run.yaml").is_file():
        return
    try:
        before = (yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8")) or {}).get("settings", {}).get("gpus", 1)
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return  # check_output names a broken run.yaml
    if isinstance(before, int) and before != processes:
        raise BadInput(
            f"--resume {folder}: the run trained in {before} process{'es' if before != 1 else ''} and this one would use {processes}; "
            f"resume with --gpus {before} (its checkpoints hold that world size's steps and data shards)"
        )


def finish_together() -> None:
    """Under accelerate launch, at the end of every process's run: wait for all of them (rank 0 writes the
    run folder meanwhile), then close the process group, so no process leaves while a peer still talks to it."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
