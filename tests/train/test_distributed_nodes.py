"""Several machines, on one: `train --nodes 2 --node-rank R --main-addr 127.0.0.1`, two launches of one CPU process each.

The two "nodes" train the tiny model together over gloo and node 0 alone writes the run; a rendezvous
that cannot happen (node 0 not there, a node that never comes, node 0's port taken) ends with one line
within --join-timeout and leaves no process behind; bad node flags are one line, exit 2; an out-of-memory
on several nodes stops with the flags to resume with (test_distributed_cpu tests the back-off on one).
About 60 s on 2 cores.
"""

from __future__ import annotations

import json
import socket
import time

import psutil
import pytest
import yaml

from gpudoctor.train import distributed
from test_distributed_cpu import BASE, finished, gpudoctor, last_error

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def left_behind(folder) -> list[str]:
    """Processes still running whose command line names `folder` (the launcher and its workers do)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(folder) in " ".join(process.info["cmdline"] or []):
            found.append(" ".join(process.info["cmdline"]))
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gpudoctor.train.demo import DATA

    path = tmp_path_factory.mktemp("nodes") / "support.json"
    path.write_text(json.dumps(json.loads(DATA.read_text(encoding="utf-8"))[:48]), encoding="utf-8")
    return path


def node_args(model, data, output, port, rank, *extra):
    return ("--model", model, "--data", data, "--output", output, *BASE, "--nodes", "2", "--node-rank", str(rank),
            "--main-addr", "127.0.0.1", "--main-port", str(port), *extra)  # fmt: skip


def test_two_nodes_on_localhost_train_end_to_end(tiny_model, data, tmp_path):
    port, steps = free_port(), ("--max-steps", "4", "--save-steps", "2", "--micro-batch", "2", "--grad-accum", "1", "--join-timeout", "120")
    node0 = gpudoctor(*node_args(tiny_model, data, tmp_path / "node0", port, 0, *steps))
    node1 = gpudoctor(*node_args(tiny_model, data, tmp_path / "node1", port, 1, *steps))
    (code0, out0, err0), (code1, out1, err1) = finished(node0), finished(node1)
    assert code0 == 0 and code1 == 0, (err0 + err1)[-4000:]
    assert "on each other node (1 to 1)" in err0 and "--node-rank R" in err0  # the command for the other node
    assert "trained 4 steps" in out0 and "trained 4 steps" not in out1 and "node 1: done" in err1
    report = json.loads((tmp_path / "node0" / "report.json").read_text())
    assert report["world_size"] == 2 and report["strategy"] == "ddp" and report["status"] == "finished"
    losses = [loss for _, loss in report["losses"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (tmp_path / "node0" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "node1").iterdir()) == [".launch"]  # node 1 writes no run
    for rank, folder in ((0, "node0"), (1, "node1")):
        config = yaml.safe_load((tmp_path / folder / ".launch" / f"node-{rank}" / "accelerate.yaml").read_text())  # apart, for a shared --output
        assert (config["num_machines"], config["machine_rank"], config["num_processes"]) == (2, rank, 2)
        assert (config["main_process_ip"], config["main_process_port"]) == ("127.0.0.1", port)
    resumed_yaml = yaml.safe_load((tmp_path / "node0" / "run.yaml").read_text())
    assert resumed_yaml["settings"]["nodes"] == 2 and resumed_yaml["training"]["main_addr"] is None  # where it ran is not the run


def test_node_0_not_there_is_one_line_within_the_timeout(tiny_model, data, tmp_path):
    port = free_port()
    started = time.monotonic()
    code, _, err = finished(gpudoctor(*node_args(tiny_model, data, tmp_path / "out", port, 1, "--max-steps", "1", "--join-timeout", "4")), timeout=90)
    assert code == 1 and time.monotonic() - started < 60
    line = last_error(err)
    assert f"node 1: could not join node 0 at 127.0.0.1:{port} within 4 s" in line and "nothing listens there" in line
    assert err.count("gpudoctor: error: ") == 1 and left_behind(tmp_path / "out") == []


def test_a_node_that_never_joins_is_one_line_and_frees_the_port(tiny_model, data, tmp_path):
    port = free_port()
    code, _, err = finished(gpudoctor(*node_args(tiny_model, data, tmp_path / "out", port, 0, "--max-steps", "1", "--join-timeout", "4")), timeout=90)
    assert code == 1 and "node 0: the other 1 node did not join" not in err
    assert f"node 0: node 1 did not join at 127.0.0.1:{port} within 4 s" in last_error(err)
    assert left_behind(tmp_path / "out") == []
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its closed connections may wait (TIME_WAIT); a listener would not let this bind
        probe.bind(("", port))  # the rendezvous store went with the launch
    assert not (tmp_path / "out" / "run.yaml").exists()


def test_node_0_port_taken_is_one_line(tiny_model, data, tmp_path):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = finished(gpudoctor(*node_args(tiny_model, data, tmp_path / "out", port, 0, "--max-steps", "1")), timeout=90)
    assert code == 1 and f"--main-port {port}: the port is taken on this machine" in last_error(err)
    assert "launch: accelerate" not in err  # refused before anything started


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--nodes", "2", "--node-rank", "2", "--main-addr", "127.0.0.1"), "--node-rank 2: the run has --nodes 2, so node ranks go from 0 to 1"),
        (("--node-rank", "1"), "--node-rank 1: the run has --nodes 1"),
        (("--nodes", "2"), "--nodes 2: give --main-addr HOST"),
        (("--nodes", "2", "--main-addr", "no-such-host.invalid"), "--main-addr no-such-host.invalid: no such host from here"),
        (("--nodes", "2", "--node-rank", "1", "--main-addr", "127.0.0.1", "--resume"), "--resume on node 1: "),
    ],
)
def test_bad_node_flags_are_one_line_exit_2(tiny_model, data, tmp_path, flags, said):
    args = ("--model", tiny_model, "--data", data, "--output", tmp_path / "out", *BASE, "--max-steps", "1", *flags)
    code, _, err = finished(gpudoctor(*args), timeout=90)
    assert code == 2 and said in last_error(err) and err.count("gpudoctor: error: ") == 1
    assert not list((tmp_path / "out").rglob(distributed.CONFIG_NAME))


def test_an_out_of_memory_on_several_nodes_stops_with_one_line(tmp_path, monkeypatch):
    from gpudoctor.cli import train as cli_train
    from gpudoctor.errors import ProblemFound
    from gpudoctor.settings import RunConfig, Settings

    nodes = distributed.Nodes(count=2)
    distributed.launch_dir(tmp_path, nodes).mkdir(parents=True)
    note = {"rank": 3, "step": 7, "micro_batch": 4, "grad_accum": 2}

    def failed_launch(command, env, **_):
        (distributed.launch_dir(tmp_path, nodes) / distributed.OOM_NAME).write_text(json.dumps(note))
        return 1

    config = RunConfig(model="m", data="d", output=str(tmp_path), settings=Settings(gpus=2, nodes=2, strategy="ddp"))
    monkeypatch.setattr(distributed, "run_launcher", failed_launch)
    with pytest.raises(ProblemFound, match="rank 3 ran out of memory at step 7 with micro batch 4; --micro-batch 2 --grad-accum 4, then pass --resume on every node"):
        cli_train._launch_with_backoffs(["x"], {}, config, nodes, console=None)


def test_the_launch_config_of_node_1_of_2():
    from gpudoctor.settings import Settings

    nodes = distributed.Nodes(count=2, rank=1, addr="10.0.0.5", port=29511)
    config = distributed.launch_config(4, on_cpu=False, strategy="ddp", compute_dtype="bf16", nodes=nodes)
    assert (config["num_machines"], config["machine_rank"], config["num_processes"], config["main_process_ip"], config["main_process_port"]) == (2, 1, 8, "10.0.0.5", 29511)
    assert Settings(gpus=4, nodes=2).world_size == 8
