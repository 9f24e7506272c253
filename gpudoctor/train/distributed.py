"""Several processes through `accelerate launch`: the accelerate config written into the run folder, and the command.

DDP on GPUs, or on the CPU (`--gpu cpu`, or a machine without a GPU) with the gloo backend: the same
path either way. accelerate's multi-process launcher (torchrun) starts one `gpudoctor train` per
process; with `use_cpu: true` each one trains on the CPU, where accelerate picks MULTI_CPU and gloo
(accelerate's own `MULTI_CPU` config type goes through mpirun, which a plain machine lacks).
Rank 0 alone writes the run folder (run.py, runfolder.main_process); the Trainer shards the rows.
Several machines (--nodes N --node-rank R --main-addr HOST): each runs `gpudoctor train` with its own
rank; accelerate's static rendezvous (torchrun's TCPStore on node 0's --main-port) brings them together.
The parent watches for the processes' "joined" marker (written once the process group is up) and ends
the launch with one line after --join-timeout seconds: an unreachable node 0, a node that never came.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from gpudoctor.atomic import write_text
from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.settings import Settings, TrainingOptions

LAUNCH_DIR = ".launch"  # in the run folder; a dot-folder, so the folder's checks (outputdir.check_output) pass it by
CONFIG_NAME = "accelerate.yaml"
RUN_NAME = "run.yaml"  # the run.yaml every process reads (the run folder's own run.yaml is rank 0's)
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
JOINED_ENV = "GPUDOCTOR_JOINED"  # the marker file a node's first process writes once every process joined
JOINED_NAME = "joined"  # in <output>/.launch
DEFAULT_PORT = 29500  # torchrun's, for several nodes (each must name the same port)
OOM_KEY = "gpudoctor/out-of-memory"  # in torchrun's TCPStore on node 0: which rank ran out of memory, where
OOM_NAME = "out-of-memory.json"  # in <output>/.launch: the same, for this machine's parent
BACKOFF_ENV = "GPUDOCTOR_BACKOFFS"  # the back-offs so far, from the parent to a relaunched run (JSON)


class AgreedOutOfMemory(ProblemFound):
    """A rank ran out of memory: every rank leaves, and the parent relaunches them all with half the micro batch."""

    def __init__(self, note: dict[str, int]) -> None:
        self.note = note
        super().__init__(f"rank {note['rank']} ran out of memory at step {note['step']} with micro batch {note['micro_batch']}")


@dataclass(frozen=True)
class Nodes:
    """The machines of a run: how many, this one's rank, and where node 0's rendezvous listens."""

    count: int = 1
    rank: int = 0
    addr: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    def where(self) -> str:
        return f"{self.addr}:{self.port}"


def nodes_of(settings: Any, training: Any) -> Nodes:
    """The run's machines from --nodes, --node-rank, --main-addr and --main-port. BadInput for a rank
    past the nodes, several nodes without --main-addr, or an address this machine cannot resolve."""
    count, rank = settings.nodes, training.node_rank
    if rank >= count:
        raise BadInput(f"--node-rank {rank}: the run has --nodes {count}, so node ranks go from 0 to {count - 1}")
    if count == 1:
        return Nodes(port=training.main_port or free_port())
    if not training.main_addr:
        raise BadInput(f"--nodes {count}: give --main-addr HOST, the address of node 0 that every node can reach (the same on every node)")
    try:
        socket.getaddrinfo(training.main_addr, None)
    except (socket.gaierror, UnicodeError):
        raise BadInput(f"--main-addr {training.main_addr}: no such host from here (not in DNS or /etc/hosts); give node 0's IP address") from None
    return Nodes(count, rank, training.main_addr, training.main_port or DEFAULT_PORT)


def check_port(nodes: Nodes) -> None:
    """On node 0, where the rendezvous listens: ProblemFound when something already holds --main-port."""
    if nodes.rank != 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's TIME_WAIT does not count; a listener does
        try:
            probe.bind(("", nodes.port))
        except OSError as err:
            why = "another program listens there" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise ProblemFound(f"--main-port {nodes.port}: the port is taken on this machine ({why}); pick a free one with --main-port, the same on every node") from None


def world_size() -> int:
    """How many processes train this run: accelerate launch's WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def strategy_of(settings: Settings) -> str:
    """report.json's strategy: single for one process, else the run's ddp or fsdp (ddp when unset)."""
    if settings.world_size <= 1:
        return "single"
    return settings.strategy if settings.strategy in ("ddp", "fsdp") else "ddp"


def free_port() -> int:
    """A TCP port nothing listens on now, for the processes' rendezvous on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_config(processes: int, *, on_cpu: bool, strategy: str, compute_dtype: str, nodes: Nodes) -> dict[str, Any]:
    """The accelerate config of this machine's part of a run: `processes` per node on `nodes` (DDP; FSDP-QLoRA
    on GPUs). accelerate counts num_processes over all machines."""
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "FSDP" if strategy == "fsdp" and not on_cpu else "MULTI_GPU",
        "num_machines": nodes.count,
        "machine_rank": nodes.rank,
        "num_processes": processes * nodes.count,
        "main_process_ip": nodes.addr,
        "main_process_port": nodes.port,
        "mixed_precision": "no" if on_cpu else MIXED_PRECISION.get(compute_dtype, "no"),
        "use_cpu": on_cpu,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "debug": False,
    }
    if config["distributed_type"] == "FSDP":  # PEFT's FSDP-QLoRA recipe (docs/source/accelerate/fsdp.md), the weights kept on the GPUs
        config["fsdp_config"] = {
            "fsdp_version": 1, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_cpu_ram_efficient_loading": True, "fsdp_forward_prefetch": False, "fsdp_offload_params": False,
            "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": False,
        }  # fmt: skip
    return config


def launch_dir(output: Path, nodes: Nodes) -> Path:
    """Where this machine's launch files go: <output>/.launch, and .launch/node-R with several nodes (so nodes
    that share one --output folder, on a shared file system, keep their configs, markers and logs apart)."""
    return output / LAUNCH_DIR if nodes.count == 1 else output / LAUNCH_DIR / f"node-{nodes.rank}"


def write_launch_config(folder: Path, config: dict[str, Any]) -> Path:
    """<folder>/accelerate.yaml (folder: launch_dir's), whole or not at all, with the user's umask (reusable with `accelerate launch --config_file`)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))


def check_node_resume(output: Path, nodes: Nodes, *, resume: bool) -> None:
    """On --resume, on a node other than 0: BadInput when its --output holds no checkpoint to go on from
    (node 0 writes them; every rank reads its own node's)."""
    if not resume or nodes.rank == 0:
        return
    from gpudoctor.train.checkpoints import newest_complete

    if newest_complete(output) is None or not (output / "run.yaml").is_file():
        raise BadInput(
            f"--resume on node {nodes.rank}: {output} holds no checkpoint and run.yaml (node 0 writes them); copy node 0's "
            f"run.yaml and checkpoints/ there, or give every node the same --output on a shared file system"
        )


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


def run_launcher(command: list[str], env: dict[str, str], *, joined: Path, join_timeout: float, nodes: Nodes) -> int:
    """Run the launcher in a session of its own and pass it this process's SIGINT/SIGTERM once each (torchrun
    hands it to every process, which save at the same step and stop); its exit code (130: interrupted, saved).
    Until `joined` appears (every process of every node is in the process group) it may take `join_timeout`
    seconds; then the launch and its processes are ended and ProblemFound says which rendezvous failed."""
    import signal
    import subprocess

    joined.unlink(missing_ok=True)
    process = subprocess.Popen(command, env={**env, JOINED_ENV: str(joined)}, start_new_session=True)
    previous = {sig: signal.signal(sig, lambda signum, _frame: process.send_signal(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = time.monotonic() + join_timeout
    try:
        while not joined.exists():
            try:
                return process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline and not joined.exists():
                    end_tree(process.pid)
                    raise ProblemFound(join_failure(nodes, join_timeout)) from None
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def end_tree(pid: int) -> None:
    """SIGKILL the launcher and every process below it (torchrun starts each worker in a session of its own).
    Only before the processes joined: nothing of the run is written yet."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=10)


def join_failure(nodes: Nodes, timeout: float) -> str:
    """The one line for a rendezvous that did not complete in `timeout` seconds, from where this node stands."""
    waited = f"within {timeout:g} s (--join-timeout)"
    if nodes.count == 1:
        return f"the processes did not all start {waited}; see {LAUNCH_DIR}/logs in the output folder, or raise --join-timeout"
    if nodes.rank == 0:
        others = "node 1 did not join" if nodes.count == 2 else f"nodes 1 to {nodes.count - 1} did not all join"
        return (
            f"node 0: {others} at {nodes.where()} {waited}; "
            f"start `gpudoctor train … --node-rank R` on each, with --main-addr {nodes.addr} --main-port {nodes.port}, and let them reach that port"
        )
    return f"node {nodes.rank}: could not join node 0 at {nodes.where()} {waited}: {reachability(nodes)}"


def reachability(nodes: Nodes) -> str:
    """Why a node could not join node 0, as far as one TCP connection tells."""
    try:
        with socket.create_connection((nodes.addr, nodes.port), timeout=3):
            return "something answers there, but no run of this --nodes and --main-port; start node 0's train with the same settings"
    except ConnectionRefusedError:
        return "nothing listens there; start node 0 first (or give the --main-port it uses)"
    except OSError:
        return "the address does not answer; check --main-addr and that a firewall lets the port through"


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch` (its parser and launch_command); the processes' own one-line errors are the message,
    so a failed process ends this with its exit code (130: interrupted and saved) instead of torchrun's traceback."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed import run as torchrun  # noqa: F401  (its loggers exist now, to be quieted)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    for name, logger in list(logging.root.manager.loggerDict.items()):  # torchrun's own lines: a failed rank is said below, in one line
        if name.startswith("torch.distributed.elastic") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.CRITICAL)
    logs = Path(args.config_file).parent / "logs"  # the other ranks' output; the console shows rank 0's (its lines speak for the run)
    config = yaml.safe_load(Path(args.config_file).read_text(encoding="utf-8")) or {}
    machines, machine = max(1, int(config.get("num_machines", 1))), int(config.get("machine_rank", 0))
    processes = int(config.get("num_processes", 1)) // machines  # on this machine
    if processes > 1:
        args.log_dir, args.redirects = str(logs), ",".join(f"{rank}:3" for rank in range(1, processes))
    first = machine * processes  # the global rank of this machine's first process, whose lines are on the console
    try:
        accelerate_launch(args)
    except ChildFailedError as err:
        codes = {rank: f.exitcode if f.exitcode >= 0 else 128 - f.exitcode for rank, f in err.failures.items()}
        if not codes.get(first):
            say_other_rank(logs, sorted(rank - first for rank in codes), first)
        return 130 if 130 in codes.values() else next((c for c in codes.values() if c), 1)
    except (SignalException, KeyboardInterrupt):
        return 130
    except ConnectionError as err:  # accelerate's own check of node 0's port, in a race with another program
        print(f"gpudoctor: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


def _group() -> Any:
    """torch.distributed when this process is one of several in a process group that is up, else None."""
    if world_size() <= 1:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def gathered(value: int) -> list[int] | None:
    """`value` of every process, by rank (a collective: every rank calls it); None in a single process."""
    dist = _group()
    if dist is None:
        return None
    import torch

    values = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(values, torch.tensor([int(value)], dtype=torch.int64))
    return [int(v.item()) for v in values]


def summed(value: int) -> int:
    """`value` added over every process (accelerate launch: the real tokens of all ranks); itself in a single process."""
    dist = _group()
    if dist is None:
        return value
    import torch

    total = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def say_other_rank(logs: Path, local_ranks: list[int], first: int = 0) -> None:
    """A failure of a process other than this machine's first (whose console is silent): its own last error line,
    from its log (named by local rank); `first` is the global rank of this machine's first process."""
    for local in local_ranks:
        for log in sorted(logs.glob(f"*/attempt_*/{local}/stderr.log")):
            lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.startswith("gpudoctor: error: ")]
            if lines:
                print(lines[-1].replace("gpudoctor: error: ", f"gpudoctor: error: rank {first + local}: ", 1), file=sys.stderr)
                return
    print(f"gpudoctor: error: rank {first + local_ranks[0] if local_ranks else '?'} failed; its output is under {logs}", file=sys.stderr)


def agreed(flag: bool) -> bool:
    """True on every process when it is True on any (accelerate launch: a signal that reached one rank stops all
    at the same step, so the one checkpoint holds every rank's step); the flag itself in a single process."""
    dist = _group()
    if dist is None:
        return flag
    import torch

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


def check_resume_world(folder: Path, processes: int, *, resume: bool, nodes: int = 1) -> None:
    """On --resume: BadInput when the run in `folder` trained with another number of processes per node or of
    nodes (its optimizer steps, data shards and checkpoints are for that world size)."""
    if not resume or not (folder / "run.yaml").is_file():
        return
    try:
        settings = (yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8")) or {}).get("settings", {})
        before, before_nodes = settings.get("gpus", 1), settings.get("nodes", 1)
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return  # check_output names a broken run.yaml
    if not (isinstance(before, int) and isinstance(before_nodes, int)) or (before, before_nodes) == (processes, nodes):
        return
    flags = f"--gpus {before}" + (f" --nodes {before_nodes}" if before_nodes > 1 or nodes > 1 else "")
    raise BadInput(
        f"--resume {folder}: the run trained in {_shape(before, before_nodes)} and this one would use {_shape(processes, nodes)}; "
        f"resume with {flags} (its checkpoints hold that world size's steps and data shards)"
    )


def _shape(gpus: int, machines: int) -> str:
    return f"{gpus} process{'es' if gpus != 1 else ''}" + (f" on each of {machines} nodes" if machines > 1 else "")


def join() -> None:
    """Under accelerate launch, first thing in every process: bring up the process group (it waits for every
    process of every node) and, in each machine's first process, write the marker its parent watches for."""
    if world_size() <= 1:
        return
    from accelerate import PartialState

    PartialState()  # accelerate's own init: gloo on the CPU (ACCELERATE_USE_CPU), nccl on GPUs
    dist = _group()
    if dist is not None:
        dist.barrier()
    marker = os.environ.get(JOINED_ENV)
    if marker and os.environ.get("LOCAL_RANK", "0") == "0":
        Path(marker).touch()


def without_launch(config: Any) -> Any:
    """The config as the run folder keeps it: where this machine stood (--node-rank, --main-addr, --main-port,
    --join-timeout) is not part of the run, so a resume may name other addresses."""
    plain = TrainingOptions()
    training = replace(config.training, node_rank=plain.node_rank, main_addr=plain.main_addr, main_port=plain.main_port, join_timeout=plain.join_timeout)
    return replace(config, training=training)


def _store(timeout_s: float = 5.0) -> Any:
    """A client of torchrun's TCPStore on node 0 (MASTER_ADDR:MASTER_PORT), which every process reaches."""
    from datetime import timedelta

    from torch.distributed import TCPStore

    return TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(seconds=timeout_s))


def tell_out_of_memory(step: int, micro_batch: int, grad_accum: int) -> AgreedOutOfMemory:
    """This rank ran out of memory: say so in the store (the other ranks, stuck in a collective, fail when
    this process leaves and read it there) and in this machine's note; the exception to leave with."""
    note = {"rank": int(os.environ.get("RANK", "0")), "step": step, "micro_batch": micro_batch, "grad_accum": grad_accum}
    try:
        _store().set(OOM_KEY, json.dumps(note))
    except Exception:  # the store is the agreement's carrier; without it the others still fail, and say their own line
        pass
    _write_note(note)
    return AgreedOutOfMemory(note)


def peer_out_of_memory() -> AgreedOutOfMemory | None:
    """After a failed collective: the exception to leave with when another rank ran out of memory, else None."""
    if world_size() <= 1 or "MASTER_ADDR" not in os.environ:
        return None
    try:
        store = _store(timeout_s=3.0)
        if not store.check([OOM_KEY]):
            return None
        note = json.loads(store.get(OOM_KEY))
    except Exception:  # node 0's launcher is gone: nothing more to learn
        return None
    _write_note(note)
    return AgreedOutOfMemory(note)


def _write_note(note: dict[str, int]) -> None:
    """<output>/.launch/out-of-memory.json, from this machine's first process, for its parent (relaunch_after)."""
    folder = os.environ.get(JOINED_ENV)
    if folder and os.environ.get("LOCAL_RANK", "0") == "0":
        write_text(Path(folder).with_name(OOM_NAME), json.dumps(note))


def read_note(launch_dir: Path) -> dict[str, int] | None:
    """The out-of-memory note a failed launch left in `launch_dir` (and remove it), or None."""
    path = launch_dir / OOM_NAME
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return note if isinstance(note, dict) else None


def backoffs_given() -> list[dict[str, int]]:
    """The out-of-memory back-offs the parent made before this launch (BACKOFF_ENV), oldest first."""
    try:
        given = json.loads(os.environ.get(BACKOFF_ENV) or "[]")
    except ValueError:
        return []
    return [item for item in given if isinstance(item, dict)] if isinstance(given, list) else []


def finish_together() -> None:
    """Under accelerate launch, at the end of every process's run: wait for all of them (rank 0 writes the
    run folder meanwhile), then close the process group, so no process leaves while a peer still talks to it."""
    dist = _group()
    if dist is not None:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
