"""Signal handling without training: SIGTERM/SIGINT ask for a checkpoint and a stop, then the old handlers return."""

from __future__ import annotations

import os
import signal

import pytest

from gpudoctor.train.callbacks import RunLog, StopOnSignal


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_and_stops_at_the_end_of_the_step(signum):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    before = signal.getsignal(signum)
    log = RunLog()
    callback = StopOnSignal(log)
    args, state, control = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none"), TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    os.kill(os.getpid(), signum)
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop and log.stopped_by == "signal"
    with pytest.raises(KeyboardInterrupt):  # a second signal while saving aborts at once
        os.kill(os.getpid(), signum)
    callback.on_train_end(args, state, control)
    assert signal.getsignal(signum) is before
