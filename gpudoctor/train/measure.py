"""Peak memory on this machine, read the way the plan counts it; the first-step check; `plan --verify`.

Readings (named as in gpudoctor.plan.corrections):
    GPU  torch.cuda.max_memory_allocated / max_memory_reserved since reset_peaks(), and what NVML
         (NVIDIA) or amdsmi (AMD) says this process holds on the card: nvidia-smi's figure, the CUDA
         context included. NVML keeps no peak; read at the end of a step, the caching allocator still
         holds what the step reserved, so it is the step's peak as the card saw it.
    CPU  the process's peak resident set since reset_peaks() (VmHWM in /proc/self/status, reset by
         writing 5 to /proc/self/clear_refs), else getrusage's peak over the process's life.

`judge` compares readings with the memory model's figures for the settings that ran and records the
measurement as a correction; `train` calls it after its first optimizer step (the heaviest rows at
the full micro batch come first, gpudoctor.train.packing.HeaviestFirst) and re-plans when the
footprint passes the share of the budget a plan may use. `verify` is `plan --verify`: random weights
of the model's architecture (AutoConfig → from_config, nothing downloaded), saved and loaded through
the same NF4 + LoRA path as `train`, a few optimizer steps on full rows of random tokens.
torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.plan import corrections, memory
from gpudoctor.plan.corrections import LABELS, Measurement
from gpudoctor.plan.planner import HEADROOM_FRACTION
from gpudoctor.plan.types import Hardware, MemoryEstimate, Plan
from gpudoctor.settings import Settings, TrainingOptions
from gpudoctor.types import GIB, ModelSpec

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
CPU_VERIFY_PARAMETER_LIMIT = 1_500_000_000  # as train's: above this, random weights and steps on a CPU take too long
VERIFY_STEPS = 3
VERIFY_SEED = 0


# Readings.


def reset_peaks(device: str) -> None:
    """Start the peaks afresh: torch's allocator statistics on a GPU, the resident-set high-water mark on the CPU."""
    if device != "cpu":
        reset_gpu_peaks()
    reset_rss_peak()


def reset_gpu_peaks() -> None:
    import torch

    torch.cuda.reset_peak_memory_stats()


def read_peaks(device: str) -> dict[str, int]:
    """The figures this machine can read now, by name (allocated, reserved, device on a GPU; rss on the CPU)."""
    if device == "cpu":
        return {"rss": rss_peak()}
    readings = gpu_peaks()
    used = device_used()
    if used:
        readings["device"] = used
    return readings


def gpu_peaks() -> dict[str, int]:
    import torch

    return {"allocated": int(torch.cuda.max_memory_allocated()), "reserved": int(torch.cuda.max_memory_reserved())}


def device_used() -> int | None:
    """Bytes this process holds on its GPUs per NVML, else amdsmi; None when neither answers for this process."""
    for read in (nvml_used, amdsmi_used):
        try:
            found = read()
        except Exception:  # no library, no driver, another PID namespace: the torch figures remain
            found = None
        if found:
            return found
    return None


def nvml_used() -> int | None:
    import pynvml

    pynvml.nvmlInit()
    try:
        pid, total = os.getpid(), 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(index)):
                if process.pid == pid and process.usedGpuMemory:
                    total += int(process.usedGpuMemory)
        return total or None
    finally:
        pynvml.nvmlShutdown()


def amdsmi_used() -> int | None:
    import amdsmi

    amdsmi.amdsmi_init()
    try:
        pid, total = os.getpid(), 0
        for handle in amdsmi.amdsmi_get_processor_handles():
            for process in amdsmi.amdsmi_get_gpu_process_list(handle):
                info = process if isinstance(process, dict) else amdsmi.amdsmi_get_gpu_process_info(handle, process)
                if info.get("pid") == pid:
                    total += int((info.get("memory_usage") or {}).get("vram_mem") or 0)
        return total or None
    finally:
        amdsmi.amdsmi_shut_down()


def _status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM, VmRSS) in bytes; None where it cannot be read."""
    try:
        for line in STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_peak() -> int:
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def rss_now() -> int:
    return _status_bytes("VmRSS") or 0


def reset_rss_peak() -> None:
    try:
        CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        pass


# Judging a measured step against the plan.


@dataclass
class StepCheck:
    """What a measured step is compared with, and where its correction is recorded (None: nowhere)."""

    model: ModelSpec
    hardware: Hardware
    corrections_file: Path | None = None
    source: str = "train"

    @property
    def usable(self) -> int:
        return int(self.hardware.budget_bytes * HEADROOM_FRACTION)

    def estimate(self, settings: Settings) -> MemoryEstimate:
        return memory.estimate(self.model, settings, self.hardware)

    def fits(self, settings: Settings, measurement: Measurement) -> bool:
        """Whether `settings` fit the usable budget once the memory model is corrected by `measurement`."""
        return corrections.device_figure(corrections.corrected(self.estimate(settings), measurement)) <= self.usable


@dataclass
class Judged:
    settings: Settings
    estimate: MemoryEstimate
    measurement: Measurement
    footprint: int | None  # the whole measured footprint, counted as the plan's peak_reserved is
    usable: int
    stored: Path | None = None

    @property
    def over(self) -> bool:
        return self.footprint is not None and self.footprint > self.usable


def judge(check: StepCheck, settings: Settings, readings: dict[str, int]) -> Judged:
    """Compare `readings` with the memory model's figures for `settings`; record them as a correction."""
    estimate = check.estimate(settings)
    figures = corrections.measured_figures(readings, estimate, check.hardware.device)
    shape = {name: getattr(settings, name) for name in corrections.SPAN}
    measurement = Measurement(corrections.today(), check.source, shape, figures)
    judged = Judged(settings, estimate, measurement, corrections.footprint(figures, estimate), check.usable)
    key = corrections.correction_key(check.model, settings, check.hardware) if figures else None
    if check.corrections_file is not None and key is not None:
        try:
            judged.stored = corrections.record(key, measurement, check.corrections_file)
        except OSError:
            pass  # a cache folder that cannot be written loses the correction, not the run
    return judged


def figures_text(measurement: Measurement) -> str:
    """'process RSS 0.93 GiB where 0.81 GiB was predicted (×1.15)', one clause per figure."""
    return "; ".join(
        f"{LABELS[name]} {measured / GIB:.2f} GiB where {predicted / GIB:.2f} GiB was predicted (×{measured / predicted:.2f})"
        for name, (measured, predicted) in measurement.figures.items()
        if predicted > 0
    )


def smaller_batching(check: StepCheck, judged: Judged) -> tuple[int, int] | None:
    """The largest micro batch below the one that ran that keeps the rows per optimizer step and fits
    once corrected by the measurement (micro batch 1 when none does); None at micro batch 1."""
    settings = judged.settings
    per_step = settings.micro_batch * settings.grad_accum
    smaller = [mb for mb in range(settings.micro_batch - 1, 0, -1) if per_step % mb == 0]
    for micro in smaller:
        if check.fits(dataclasses.replace(settings, micro_batch=micro, grad_accum=per_step // micro), judged.measurement):
            return micro, per_step // micro
    return (1, per_step) if smaller else None


class OverBudget(Exception):
    """The first step's footprint passed the usable budget: train re-plans to `target` (micro batch, accumulation)."""

    def __init__(self, judged: Judged, target: tuple[int, int], budget: int) -> None:
        self.judged, self.target = judged, target
        footprint = judged.footprint or 0
        self.why = (
            f"step 1 peaked at {footprint / GIB:.2f} GiB, over the {judged.usable / GIB:.2f} GiB a run may use "
            f"({HEADROOM_FRACTION:.0%} of {budget / GIB:.2f} GiB)"
        )
        super().__init__(self.why)


# plan --verify.


@dataclass
class Verified:
    """What `plan --verify` measured: the settings it ran, on what, and each figure against the model's."""

    judged: Judged
    device: str
    steps: int

    @property
    def measurement(self) -> Measurement:
        return self.judged.measurement


def refuse_verify(plan: Plan) -> None:
    """Refuse, in one line naming what to do, what --verify cannot measure here. Imports no torch."""
    hw, name = plan.hardware, plan.model.name
    if hw.source == "reference":
        raise BadInput("--verify measures this machine, which has no GPU; drop --vram-gib (it plans for another machine's card)")
    if hw.source == "profile":
        raise BadInput(f"--verify measures this machine's own card, not the {hw.name} profile; drop --gpu (or pass --gpu auto)")
    if plan.settings.world_size > 1:
        raise BadInput("--verify measures one GPU; drop --gpus (each GPU of a DDP run holds about what one does)")
    params = memory.total_params(plan.model)
    if hw.device == "cpu" and params > CPU_VERIFY_PARAMETER_LIMIT:
        raise ProblemFound(
            f"--verify: {name} has {params / 1e9:.1f}B parameters, too many to build random weights of and step on the CPU this plan is for; "
            f"run `gpudoctor plan --model {name} --verify` where the GPU you will train on is (here without --gpu cpu, if `gpudoctor check` "
            f"finds one), or verify a model under {CPU_VERIFY_PARAMETER_LIMIT / 1e9:.1f}B parameters on this CPU"
        )
    if not plan.fits:
        raise ProblemFound(f"--verify: {name} does not fit {hw.name} with these settings, so there is nothing to measure; see the plan's suggestions")


def torch_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "rocm" if torch.version.hip else "cuda"
    return "cpu"


def verify(plan: Plan, *, steps: int = VERIFY_STEPS, corrections_file: Path | None = None) -> Verified:
    """Run `steps` optimizer steps of the plan's settings with random weights of its model on this
    machine; compare the peaks with the memory model's and record the correction in `corrections_file`."""
    refuse_verify(plan)
    from gpudoctor.train import model as models
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    device = torch_device()
    if plan.hardware.device != "cpu" and device == "cpu":
        raise ProblemFound(f"--verify: torch sees no GPU here, so it cannot measure the {plan.hardware.name}; run `gpudoctor check`")
    settings = dataclasses.replace(plan.settings, grad_accum=1)  # one micro batch per step: the peak is a micro batch's
    work = corrections_file.parent if corrections_file is not None else Path(tempfile.gettempdir())
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpudoctor-verify-", dir=work) as folder:
        model_dir = write_random_model(plan.model, settings, Path(folder) / "model")
        model = models.add_lora(models.load_base(model_dir, settings), settings)
        rows = random_rows(plan.model.vocab_size, settings.seq_len, settings.micro_batch * steps, packed=settings.packing)
        readings = run_steps(model, settings, rows, Path(folder), device, steps)
    check = StepCheck(plan.model, plan.hardware, corrections_file, source="verify")
    return Verified(judge(check, settings, readings), device, steps)


def write_random_model(spec: ModelSpec, settings: Settings, folder: Path) -> Path:
    """A model folder (config.json + safetensors in the compute dtype) with random weights of `spec`'s
    architecture: the local config.json when the model is a folder, else a config built from the spec."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gpudoctor.train.model import DTYPES

    try:
        if spec.local_path and (Path(spec.local_path) / "config.json").is_file():
            config = AutoConfig.from_pretrained(spec.local_path, local_files_only=True)
        else:
            config = AutoConfig.for_model(spec.architecture, **architecture_fields(spec))
        torch.manual_seed(VERIFY_SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, DTYPES[settings.compute_dtype]))
    except (ValueError, KeyError, OSError) as err:
        raise BadInput(f"--verify: cannot build {spec.name} from its architecture ({str(err).splitlines()[0][:160]})") from None
    model.save_pretrained(str(folder), safe_serialization=True)
    del model
    return folder


def architecture_fields(spec: ModelSpec) -> dict[str, Any]:
    """The config.json fields of a profile's ModelSpec (transformers' names)."""
    fields = {
        "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers, "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads, "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings, "tie_word_embeddings": spec.tie_word_embeddings,
    }  # fmt: skip
    optional = {"head_dim": spec.head_dim, "attn_logit_softcapping": spec.attn_logit_softcapping, "final_logit_softcapping": spec.final_logit_softcapping}
    return fields | {key: value for key, value in optional.items() if value is not None}


def random_rows(vocab: int, seq_len: int, count: int, *, packed: bool, seed: int = VERIFY_SEED) -> list[Any]:
    """Full rows of random tokens, every position a target (the most the loss ever holds); packed
    rows hold two samples, so attention takes the same block-diagonal mask as a packed run."""
    from gpudoctor.train.packing import Row
    from gpudoctor.train.tokenize import IGNORE

    rng = random.Random(seed)
    first = seq_len // 2 if packed else seq_len
    rows = []
    for _ in range(count):
        ids = [rng.randrange(vocab) for _ in range(seq_len)]
        labels = [IGNORE] + ids[1:]
        if packed:
            labels[first] = IGNORE
        rows.append(Row(ids, labels, list(range(first)) + list(range(seq_len - first)), [1, 2] if packed else [1]))
    return rows


def run_steps(model: Any, settings: Settings, rows: list[Any], folder: Path, device: str, steps: int) -> dict[str, int]:
    """`steps` optimizer steps through the Trainer as `train` builds it; the peak of each figure over them."""
    from gpudoctor.train.callbacks import PeakWatch
    from gpudoctor.train.packing import RowCollator, RowDataset
    from gpudoctor.train.run import is_out_of_memory
    from gpudoctor.train.trainer import Batching, build_trainer, training_arguments

    options = TrainingOptions(epochs=1, lr=1e-5, save_steps=10**9, warmup_ratio=0.0, max_steps=steps)
    args = training_arguments(settings, options, Batching(settings.micro_batch, 1), folder / "checkpoints", on_gpu=device != "cpu", has_eval=False)
    watch = PeakWatch(device)
    trainer = build_trainer(model, args, RowDataset(rows, count_tokens=False), None, RowCollator(0), [watch], folder / "tb")
    try:
        trainer.train()
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        raise ProblemFound(
            f"--verify: out of memory at micro batch {settings.micro_batch}, seq_len {settings.seq_len}: the plan does not fit this card "
            f"as it is now; close what else uses it, or plan with --micro-batch {max(1, settings.micro_batch // 2)}"
        ) from None
    return watch.peaks

