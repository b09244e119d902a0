"""The command line (issue: NASH core, items 8 and 10) on tiny models and real data files."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED, T5_TOKENIZER

from explorer.cli.main import main
from pruning import PruningPlan, load_pruned

SAMSUM = SHARED / "data" / "SAMSum"
needs_shared = pytest.mark.skipif(not SAMSUM.exists() or not T5_TOKENIZER.exists(),
                                  reason="../shared/data and ../shared/models are not beside the project")
FAST = ["--finetune-steps", "1", "--batch-size", "2", "--train-samples", "8", "--eval-samples", "2",
        "--calibration-samples", "2", "--input-tokens", "16", "--new-tokens", "4", "--repeats", "1"]


@pytest.fixture(autouse=True)
def cache(isolated_cache):
    """Every test here gets a fresh project cache (conftest.isolated_cache)."""


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_shared
@pytest.mark.slow
def test_prune_writes_smaller_model_plan_and_metrics(tiny_t5_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(["prune", "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM),
                           "--encoder-sparsity", "0.5", "--decoder-layers", "2", "--layer-selection", "high",
                           "--recovery-steps", "1", *FAST, "--out", str(out)], capsys)
    assert code == 0
    assert {"plan.json", "metrics.json", "config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    plan = PruningPlan.load(out)
    assert plan.kept_decoder_layers == (2, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert abs(metrics["encoder_sparsity_achieved"] - 0.5) < 0.1
    assert metrics["weights"] == "pretrained"  # a local folder is taken as given
    assert metrics["quality"]["pruned"]["num_examples"] == 2
    assert set(metrics["quality"]["pruned"]["metrics"]) >= {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    dense, pruned = metrics["measurements"]["dense"], metrics["measurements"]["pruned"]
    assert pruned["params"]["params_m"] < dense["params"]["params_m"]
    assert 0 < pruned["macs"]["gmacs"] < dense["macs"]["gmacs"]
    assert pruned["latency"]["latency_ms"] > 0 and pruned["latency"]["new_tokens"] == 4
    assert metrics["settings"]["recovery_steps"] == 1 and metrics["recovery_finetune"]["steps"] == 1
    assert "cpu" in metrics["device"]
    assert "| pruned |" in stdout
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["num_examples"] == 2 and len(predictions["dense"]) == len(predictions["pruned"]) == 2
    assert "predictions" not in metrics["quality"]["pruned"]  # every output in predictions.json, not metrics.json
    interval = metrics["intervals"]["vs_dense"]
    assert interval["metric"] == "rougeL" and interval["n"] == 2
    assert interval["low"] <= interval["diff"] <= interval["high"]
    source, target = metrics["task_lengths"]
    assert 1 <= source <= 512 and 1 <= target <= 128 and pruned["latency_task"]["input_tokens"] == source
    assert metrics["speedup_task_lengths"] > 0 and "task's median lengths" in stdout
    assert re.search(rf"The encoder pass takes \d+% .* and \d+% at the task's {source} in / {target} out; the rest "
                     r"is the decoder steps", stdout)  # the teaching point: where the time goes at each length
    model = load_pruned(out)
    assert sum(p.numel() for p in model.parameters()) == round(pruned["params"]["params_m"] * 1e6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    code, report, _ = run(["report", str(out)], capsys)
    assert code == 0 and report.splitlines()[0].startswith("| model | rouge1 | rouge2 | rougeL | rougeLsum |")
    assert report.splitlines()[3].startswith("| pruned |")


@needs_shared
def test_dense_finetune_is_cached(tiny_t5_dir, tmp_path, capsys):
    args = ["finetune", "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM),
            "--finetune-steps", "1", "--batch-size", "2", "--train-samples", "4"]
    code, first, _ = run(args, capsys)
    assert code == 0 and json.loads(first)["cached"] is False
    code, second, _ = run(args, capsys)
    assert code == 0 and json.loads(second)["cached"] is True
    assert json.loads(first)["path"] == json.loads(second)["path"]


@pytest.mark.slow  # ~8 s: times a random t5-small (60M parameters)
def test_measure_and_evaluate_commands(tmp_path, capsys):
    if not T5_TOKENIZER.exists():
        pytest.skip("../shared/models is not beside the project")
    code, stdout, _ = run(["measure", "--model", f"random:{T5_TOKENIZER}", "--input-tokens", "8", "--new-tokens", "2",
                           "--repeats", "1"], capsys)
    assert code == 0 and "| end-to-end ms |" in stdout
    row = stdout.strip().splitlines()[-1].split("|")
    assert float(row[1]) > 0 and abs(float(row[5]) - 60.5) < 0.1  # t5-small: 60.5M parameters


def test_module_entry_point_reports_errors_in_one_line():
    result = subprocess.run([sys.executable, "-m", "explorer", "prune", "--model", "minilm2minilm", "--task",
                             "rotten_tomatoes", "--encoder-sparsity", "1.5", "--decoder-layers", "2", "--out",
                             "/tmp/never-written-xyz"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: Encoder sparsity must be in [0, 1)")


def test_an_os_error_is_one_line_with_the_path_here_and_in_the_tabs(tmp_path, monkeypatch, capsys):
    """A full disk or a folder without permission: the command line and every tab say the same line."""
    import errno

    from explorer.cli import main as cli_main
    from explorer.ui.errors import user_message

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "model.safetensors"))

    def fails(args):
        raise full

    monkeypatch.setitem(cli_main.COMMANDS, "measure", fails)
    code, _, err = run(["measure", "--model", "minilm2minilm"], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line == f"error: {user_message(full)}"
    assert str(tmp_path / "run" / "model.safetensors") in line and "No space left" in line and "free space" in line


@needs_shared
@pytest.mark.slow
def test_prune_with_learned_gates(tiny_t5_dir, tmp_path, capsys):
    out = tmp_path / "learned"
    code, stdout, _ = run(["prune", "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM),
                           "--method", "nash-learned", "--gate-steps", "3", "--no-distill", "--encoder-sparsity", "0.5",
                           "--decoder-layers", "2", "--recovery-steps", "1", *FAST, "--out", str(out)], capsys)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "nash-learned" and metrics["gate_training"]["distill"] is False
    assert PruningPlan.load(out).notes["method"] == "nash-learned"
    assert load_pruned(out).config.num_decoder_layers == 2


@needs_shared
@pytest.mark.slow
def test_prune_with_cofi_narrows_encoder_and_decoder_and_keeps_every_decoder_layer(tiny_t5_dir, tmp_path, capsys):
    out = tmp_path / "cofi"
    args = ["prune", "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM), "--method", "cofi",
            "--gate-steps", "3", "--encoder-sparsity", "0.5", "--recovery-steps", "1", *FAST]
    code, _, err = run([*args, "--decoder-layers", "2", "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "CoFi keeps every decoder layer" in err and not (tmp_path / "bad").exists()
    code, _, _ = run([*args, "--decoder-layers", "4", "--out", str(out)], capsys)
    assert code == 0
    plan = PruningPlan.load(out)
    assert plan.notes["method"] == "cofi" and plan.narrows_decoder and plan.kept_decoder_layers == (0, 1, 2, 3)
    loaded = load_pruned(out)
    assert loaded.decoder.block[0].layer[1].EncDecAttention.q.out_features == \
        len(plan.kept_cross_heads[0]) * loaded.config.d_kv


@needs_shared
@pytest.mark.slow
def test_learned_nash_trains_in_two_processes_like_accelerate_launch(tiny_t5_dir, tmp_path):
    """The multi-process path that `accelerate launch` takes on several GPUs, here with two CPU
    processes (torchrun, gloo): the dense fine-tune, gate training with learned decoder layers
    (DDP over the gated model) and the final fine-tune run in both; only the main process
    evaluates and writes the run."""
    out = tmp_path / "two-proc"
    env = dict(os.environ, EXPLORER_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "explorer", "prune",
         "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM), "--method", "nash-learned",
         "--layer-selection", "learned", "--gate-steps", "3", "--encoder-sparsity", "0.5", "--decoder-layers", "2",
         "--recovery-steps", "2", *FAST, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # one process wrote the run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gate_training"]["steps"] == 3 and len(metrics["decoder_layers_kept"]) == 2
    assert PruningPlan.load(out).notes["decoder_layers_learned"] is True
    assert load_pruned(out).config.num_decoder_layers == 2


@needs_shared
@pytest.mark.slow
def test_a_killed_prune_resumes_from_its_last_checkpoint_to_the_same_model(tiny_t5_dir, tmp_path, capsys):
    """prune --resume: killed in the recovery fine-tune after a checkpoint, then resumed; the plan
    stage is reused, recovery continues from the checkpoint, and the model equals an uninterrupted run's."""
    import torch

    from explorer.training.finetune import FinetuneSettings
    from explorer.pipelines.nash_settings import PruneSettings, TimingSettings
    from explorer.pipelines.nash import run_prune
    from explorer.runs.stages import RunFolder

    settings = PruneSettings(model=str(tiny_t5_dir), task="samsum", encoder_sparsity=0.5, decoder_layers=2,
                             data_dir=str(SAMSUM), recovery_steps=6, eval_samples=2, calibration_samples=2,
                             finetune=FinetuneSettings(max_steps=1, batch_size=2, train_samples=16),
                             timing=TimingSettings(input_tokens=16, new_tokens=4, repeats=1), save_steps=2)
    whole = run_prune(settings, tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill(fraction, message):
        if message.startswith("recovery fine-tune: step 5/"):
            raise Killed(message)

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        run_prune(settings, out, progress=kill)
    work = RunFolder.work_folder(out)
    assert not out.exists() and set(json.loads((work / "stages.json").read_text())["done"]) == {"plan"}
    with pytest.raises(ValueError, match="--resume"):
        run_prune(settings, out)
    code, _, _ = run(["prune", "--model", str(tiny_t5_dir), "--task", "samsum", "--data-dir", str(SAMSUM),
                      "--encoder-sparsity", "0.5", "--decoder-layers", "2", "--recovery-steps", "6",
                      "--finetune-steps", "1", "--batch-size", "2", "--train-samples", "16", "--eval-samples", "2",
                      "--calibration-samples", "2", "--input-tokens", "16", "--new-tokens", "4", "--repeats", "1",
                      "--save-steps", "2", "--out", str(out), "--resume"], capsys)
    assert code == 0 and not work.exists()
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["recovery_finetune"]["resumed_from"] == "checkpoint-4" and len(resumed["resumed"]) == 1
    assert resumed["quality"]["pruned"]["metrics"] == whole["quality"]["pruned"]["metrics"]
    a, b = load_pruned(tmp_path / "whole"), load_pruned(out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name, atol=1e-6, rtol=0)


def test_resume_allows_another_device_or_checkpoint_interval_and_nothing_else(tmp_path):
    """How a run is executed (device, checkpoint interval) may change on resume; what it computes may not."""
    from explorer.runs.stages import RunFolder

    out = tmp_path / "run"
    RunFolder(out, {"task": "rte", "device": "cpu", "save_steps": 200}).finish("plan", {"ok": True})
    work = RunFolder(out, {"task": "rte", "device": "cuda", "save_steps": 100}, resume=True)
    assert work.done("plan") == {"ok": True} and len(work.state["resumed"]) == 1
    work.release()  # (a run holds its folder's lock until it ends)
    with pytest.raises(ValueError, match="differ: task"):
        RunFolder(out, {"task": "mrpc", "device": "cpu", "save_steps": 200}, resume=True)


def test_a_run_folder_removes_only_its_own_stale_temporaries(tmp_path):
    """What a writer killed mid-save left (atomic_directory's `.<name>.<8 chars>`) goes when the next
    writer of that folder takes its lock; another run's temporary, work folder or files stay."""
    from explorer.runs.stages import RunFolder

    for name in (".run.kd5ot5qn", ".run.partial", ".other.kd5ot5qn", ".run.kd5ot5qnx", "run2"):
        (tmp_path / name).mkdir()
    RunFolder(tmp_path / "run", {"task": "rte"}, resume=True).release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.kd5ot5qn", ".run.kd5ot5qnx", ".run.partial", "run2"]
