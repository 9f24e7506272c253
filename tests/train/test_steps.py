"""The training run's steps on their own: prepare refuses bad inputs and writes nothing; finish maps
an interrupt, a NaN loss and a finished run to their outputs and exits; the small helpers between."""

from __future__ import annotations

import json
import time

import pytest

from gpudoctor.errors import EXIT_INTERRUPTED, BadInput, GpudoctorError, ProblemFound
from gpudoctor.settings import OPTIMIZERS as SETTINGS_OPTIMIZERS
from gpudoctor.settings import RunConfig
from gpudoctor.train import checkpoints
from gpudoctor.train.callbacks import RunLog
from gpudoctor.train.run import Fitted, finish, prepare, split_eval, start_run_folder
from gpudoctor.train.trainer import OPTIMIZERS, Batching, optimizer_name


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'[{"instruction": "a", "output": "b"},', "broken.json"),
        (json.dumps([{"instruction": "hi", "output": "ok"}, {"instruction": "word " * 400, "output": "ok"}]).encode(), "record 2 is"),
        (json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]).encode(), "no assistant reply"),
    ],
)
def test_prepare_refuses_bad_data_and_writes_nothing(tiny_model, tiny_config, tmp_path, content, needle):
    data = tmp_path / "broken.json"
    data.write_bytes(content)
    with pytest.raises(BadInput, match=needle):
        prepare(tiny_config(tiny_model, data, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_prepare_refuses_a_missing_data_file_output_or_a_lone_multi_gpu_run(tiny_model, tiny_config, tiny_settings, support_data, tmp_path, monkeypatch):
    config = tiny_config(tiny_model, support_data, tmp_path / "out")
    with pytest.raises(BadInput, match="no training data"):
        prepare(RunConfig(model=config.model, output=config.output, settings=config.settings))
    with pytest.raises(BadInput, match="no output folder"):
        prepare(RunConfig(model=config.model, data=config.data, settings=config.settings))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(ProblemFound, match="accelerate launch"):
        prepare(tiny_config(tiny_model, support_data, tmp_path / "out", settings=tiny_settings(gpus=2, strategy="ddp")))
    assert not (tmp_path / "out").exists()


def test_prepare_gathers_rows_and_notes_without_writing(tiny_model, tiny_config, support_data, tmp_path):
    prepared = prepare(tiny_config(tiny_model, support_data, tmp_path / "out", val_size=4))
    assert prepared.device == "cpu" and prepared.checkpoint is None and prepared.model_dir == tiny_model.resolve()
    assert len(prepared.dataset.records) == 48
    assert sum(len(row.records) for row in prepared.train_rows) == 44 and sum(len(row.records) for row in prepared.eval_rows) == 4
    assert all(row.real_tokens <= 256 for row in prepared.train_rows)
    assert prepared.notes[0].startswith(f"packed 44 samples into {len(prepared.train_rows)} rows")
    assert not prepared.tokenized.from_cache and prepared.tokenized.cache_file
    assert not (tmp_path / "out").exists()  # the token cache is written by start_run_folder
    start_run_folder(prepared)
    assert (tmp_path / "out" / "run.yaml").is_file() and (tmp_path / "out" / "cache").is_dir()
    again = prepare(tiny_config(tiny_model, support_data, tmp_path / "other", val_size=4))
    assert not again.tokenized.from_cache  # another folder, another cache


def _prepared(tiny_model, tiny_config, support_data, folder):
    prepared = prepare(tiny_config(tiny_model, support_data, folder))
    start_run_folder(prepared)
    return prepared


def test_finish_maps_an_interrupt_to_exit_130_and_writes_the_report(tiny_model, tiny_config, support_data, tmp_path):
    prepared = _prepared(tiny_model, tiny_config, support_data, tmp_path / "out")
    saved = tmp_path / "out" / "checkpoints" / "checkpoint-2"
    saved.mkdir(parents=True)
    checkpoints.seal(saved, 2)  # as the trainer's save leaves it
    (tmp_path / "out" / "checkpoints" / "checkpoint-3").mkdir()  # unsealed: a save a kill cut short is not named
    log = RunLog(losses=[(1, 2.5), (2, 2.0)], stopped_by="signal", tokens=100, train_seconds=2.0)
    fitted = Fitted(model=None, log=log, steps=2, batching=Batching(2, 1), backoffs=[])
    with pytest.raises(GpudoctorError) as err:
        finish(prepared, fitted, started=time.perf_counter(), planned_peak_bytes=123)
    assert err.value.exit_code == EXIT_INTERRUPTED
    assert str(err.value) == f"interrupted at step 2; checkpoint saved in {tmp_path / 'out' / 'checkpoints' / 'checkpoint-2'}; continue with --resume"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["steps"] == 2 and report["tokens_per_s"] == 50.0
    assert report["planned_peak_bytes"] == 123 and report["records"] == 48 and report["checkpoint"].endswith("checkpoint-2")
    assert (tmp_path / "out" / "loss.png").is_file()
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists() and not (tmp_path / "out" / "tokenizer.json").exists()


def test_finish_maps_a_nan_loss_to_a_problem(tiny_model, tiny_config, support_data, tmp_path):
    prepared = _prepared(tiny_model, tiny_config, support_data, tmp_path / "out")
    log = RunLog(losses=[(1, float("nan"))], stopped_by="nan", nan_step=1)
    with pytest.raises(ProblemFound) as err:
        finish(prepared, Fitted(None, log, 1, Batching(2, 1), []), started=time.perf_counter(), planned_peak_bytes=1)
    assert str(err.value) == "the loss became NaN at step 1; no step had a finite loss; lower --lr (now 0.005) and start again"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"] == "nan"


class FakeAdapter:
    def save_pretrained(self, folder, safe_serialization=True, state_dict=None):  # peft's signature: finish passes the gathered state dict
        from pathlib import Path

        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"weights")
        (Path(folder) / "adapter_config.json").write_text("{}")


def test_finish_saves_a_finished_run_and_notes_the_back_off(tiny_model, tiny_config, support_data, tmp_path):
    prepared = _prepared(tiny_model, tiny_config, support_data, tmp_path / "out")
    backoffs = [{"step": 4, "micro_batch": 1, "grad_accum": 2}]
    fitted = Fitted(FakeAdapter(), RunLog(losses=[(1, 2.5)]), 6, Batching(1, 2), backoffs, final_eval_loss=1.5)
    report = finish(prepared, fitted, started=time.perf_counter(), planned_peak_bytes=None)
    folder = tmp_path / "out"
    assert (folder / "adapter_model.safetensors").read_bytes() == b"weights" and (folder / "tokenizer.json").is_file()
    assert not (folder / ".staging").exists()
    assert report.status == "finished" and report.steps == 6 and report.final_eval_loss == 1.5
    assert report.settings["micro_batch"] == 1 and report.settings["grad_accum"] == 2 and report.oom_backoffs == backoffs
    assert report.notes[0].startswith("packed 48 samples")
    assert report.notes[-1] == "out of memory 1×: finished with micro batch 1, gradient accumulation 2"
    assert json.loads((folder / "report.json").read_text()) == report.to_dict()


def test_split_eval_holds_out_a_count_or_a_fraction_with_the_seed():
    samples = list(range(10))
    kept, held = split_eval(samples, 3, seed=1, source="d.json")
    assert len(held) == 3 and sorted(kept + held) == samples
    assert split_eval(samples, 3, seed=1, source="d.json") == (kept, held)
    assert len(split_eval(samples, 0.25, seed=1, source="d.json")[1]) == 2  # round(2.5)
    assert split_eval(samples, 0, seed=1, source="d.json") == (samples, [])
    with pytest.raises(BadInput, match="has only 10 usable records"):
        split_eval(samples, 10, seed=1, source="d.json")


def test_one_optimizer_mapping_for_the_names_settings_accept():
    assert set(OPTIMIZERS) == set(SETTINGS_OPTIMIZERS)
    assert optimizer_name("adamw_8bit", on_gpu=True) == "adamw_bnb_8bit"
    assert {optimizer_name(name, on_gpu=False) for name in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")} == {"adamw_torch"}
    assert optimizer_name("adamw_torch_fused", on_gpu=False) == "adamw_torch_fused"
