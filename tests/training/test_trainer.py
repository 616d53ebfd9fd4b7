"""The trainer: exact resume (also after SIGKILL), DDP equals one process, divergence, EMA, metrics, runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.training import TrainConfig, TrainingDiverged, encode_records, load_run, train
from metavoxel.runs import RunWarning
from metavoxel.training.checkpoint import load_weights, save_spec, save_weights

WORKER = Path(__file__).with_name("train_worker.py")


def _records(model):
    g = torch.Generator().manual_seed(0)
    data = {"image": torch.rand(16, 1, 8, 8, generator=g), "age": (40 + 55 * torch.rand(16, generator=g)).tolist(),
            "group": ["A", "B", "C", "A"] * 4}
    return encode_records(model, data)


def _config(steps: int, **kw) -> TrainConfig:
    base = dict(steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, ema_decay=0.9, log_every=1, val_every=3,
                checkpoint_every=2, seed=7, precision="fp32")
    return TrainConfig(**{**base, **kw})


def _model():
    torch.manual_seed(0)
    return mv.JointModel(tiny_spec_2d())


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full = _model()
    train(full, _records(full), _config(6), val=_records(full), run_dir=tmp_path / "full")

    interrupted = _model()

    def stop(step, steps, loss):
        if step == 5:  # the last checkpoint was at step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, _records(interrupted), _config(6), val=_records(interrupted), run_dir=tmp_path / "cut",
              progress=stop)
    resumed = _model()
    result = train(resumed, _records(resumed), _config(6), val=_records(resumed), run_dir=tmp_path / "cut",
                   resume=True)
    assert result.steps == 6
    _assert_same_weights(resumed.state_dict(), full.state_dict())
    _assert_same_weights(load_weights(tmp_path / "cut/model.safetensors"), load_weights(tmp_path / "full/model.safetensors"))
    lines = [json.loads(x) for x in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]  # the step-5 line logged before the cut is not doubled


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "full"), "8", "--out", str(tmp_path / "full.st")],
                   check=True, env=env, timeout=300)
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run), "8", "--pause-after", "5"], env=env)
    deadline = time.time() + 300
    while not ((run / "progress.txt").is_file() and (run / "progress.txt").read_text() == "5"):
        assert time.time() < deadline and proc.poll() is None, "the worker did not reach step 5"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((run / "state.json").read_text())["step"] == 4
    subprocess.run([sys.executable, str(WORKER), str(run), "8", "--resume", "--out", str(tmp_path / "resumed.st")],
                   check=True, env=env, timeout=300)
    _assert_same_weights(load_weights(tmp_path / "resumed.st"), load_weights(tmp_path / "full.st"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "ddp"), "4", "--out", str(tmp_path / "ddp.st")],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    single = _model()
    train(single, _records(single), _config(4), val=_records(single))
    _assert_same_weights(load_weights(tmp_path / "ddp.st"), single.state_dict(), atol=2e-5)


def test_non_finite_loss_stops_naming_the_step_and_keeping_the_checkpoint(tmp_path, monkeypatch):
    model = _model()
    real = model.loss
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        terms = real(batch)
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(model, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"not finite at step 3; the last good checkpoint \(step 2\) is kept"):
        train(model, _records(model), _config(6, val_every=100), run_dir=tmp_path)
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 2


def test_bf16_on_a_cpu_without_bf16_instructions_is_refused_before_any_step(tmp_path, monkeypatch):
    from metavoxel.precision import bf16_native

    model = _model()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not bf16_native("cpu") and bf16_native("cuda")
    with pytest.raises(mv.InputError, match="precision 'bf16' needs a CUDA device or a CPU with bf16 instructions"):
        train(model, _records(model), _config(2, precision="bf16"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_metrics_validation_best_and_ema(tmp_path):
    model = _model()
    rows = []  # what a `log` hook (e.g. TensorBoard) receives: exactly the rows of metrics.jsonl
    result = train(model, _records(model), _config(6), val=_records(model), run_dir=tmp_path, log=rows.append)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == lines
    assert {"step", "loss", "loss/image", "loss/age", "loss/group", "lr", "records_per_s"} <= set(lines[0])
    assert [x["step"] for x in lines if "val_loss" in x] == [3, 6]
    assert result.best_val == min(x["val_loss"] for x in lines if "val_loss" in x)
    assert (tmp_path / "best.safetensors").is_file()
    state = json.loads((tmp_path / "state.json").read_text())
    raw = load_weights(tmp_path / state["dir"] / "tensors.safetensors")["param.0"]
    ema = load_weights(tmp_path / "model.safetensors")
    first = next(k for k in ema if k.startswith("net."))
    assert not torch.equal(raw, ema[first]), "model.safetensors holds the EMA, not the raw weights"
    assert torch.equal(model.state_dict()[first], ema[first]), "train() returns with the EMA weights loaded"


def test_load_run_round_trip_and_refusals(tmp_path):
    model = _model()
    train(model, _records(model), _config(2), run_dir=tmp_path)
    save_spec(tmp_path, model)
    loaded = load_run(tmp_path)
    a = model.sample(num_subjects=2, seed=1)
    b = loaded.sample(num_subjects=2, seed=1)
    assert torch.equal(a.samples["image"], b.samples["image"])

    with pytest.raises(mv.CheckpointError, match="not a metavoxel run directory"):
        load_run(tmp_path / "nowhere")
    spec = json.loads((tmp_path / "spec.json").read_text())
    relabelled = json.loads(json.dumps(spec))
    relabelled["spec"]["variables"][2]["categories"] = ["C", "B", "A"]  # every tensor still fits: sealed out
    (tmp_path / "spec.json").write_text(json.dumps(relabelled))
    with pytest.raises(mv.CheckpointError, match="spec.json is not the spec model.safetensors was trained with"):
        load_run(tmp_path)
    spec["spec"]["network"]["channels"] = [8, 24]
    spec["spec"]["network"]["norm_num_groups"] = 4
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    save_weights(tmp_path / "model.safetensors", model.state_dict())  # unsealed, as written before runs were sealed
    with pytest.warns(RunWarning, match="carries no seal"), \
            pytest.raises(mv.CheckpointError, match="do not fit the model in its spec"):
        load_run(tmp_path)
    spec["spec"]["variables"].append({"name": "cdr", "kind": "ordinal"})
    spec["plugins"]["ordinal"] = {"distribution": "metavoxel-ordinal", "version": "0.2"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(mv.CheckpointError, match="kind 'ordinal' from metavoxel-ordinal 0.2, which is not installed"):
        load_run(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    spec["spec"]["variables"].pop()
    spec["plugins"].pop("ordinal")
    spec["spec"]["network"] = tiny_spec_2d()["network"]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(mv.CheckpointError, match="not a readable .safetensors file"):
        load_run(tmp_path)
