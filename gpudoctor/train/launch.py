"""Multi-GPU runs go through `accelerate launch` (never a home-made distributed layer).

The parent writes run.yaml with gpus set, then starts one `gpudoctor train run.yaml` per GPU.
"""

from __future__ import annotations

import sys


def accelerate_command(run_yaml: str, gpus: int, strategy: str, extra: list[str] | None = None) -> list[str]:
    """The command line that trains `run_yaml` on `gpus` GPUs with DDP or FSDP."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus), "--num_machines", "1"]
    if strategy == "fsdp":
        command += [
            "--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
            "--fsdp_state_dict_type", "SHARDED_STATE_DICT", "--fsdp_cpu_ram_efficient_loading", "true",
        ]
    else:
        command += ["--multi_gpu"]
    command += ["-m", "gpudoctor", "train", run_yaml, "--skip-check", *(extra or [])]
    return command
