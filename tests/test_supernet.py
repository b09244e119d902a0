"""EFTNAS super-network (NNCF 2.19 BootstrapNAS elastic width, sandwich rule, distillation),
skip-layer extraction, ONNX parity and the explorer's EFTNAS run (the EFTNAS issue, items 4-8)."""

import math
import subprocess
import sys
from dataclasses import replace
import random

import pytest
import tiny
import torch
import torch.nn.functional as F
from transformers import BertTokenizerFast

from conftest import ROOT, SHARED
from nas import extract_subnetwork, reorder_by_importance
from nas.search_space import SearchSpace
from pruning.surgery import SkippedSelfAttention, load_pruned, save_pruned

BERT_TINY = SHARED / "models" / "bert-tiny"
SPACE = SearchSpace(num_heads=2, ffn_dim=64, hidden=64, head_dim=32, head_choices=((0, 1, 2), (1, 2), (0, 2)),
                    ffn_choices=((0, 16, 64), (32, 64), (8, 64)), targets=(0.5,), achieved=(0.5,))
CONFIGS = [((0, 1, 2), (16, 32, 8)), ((1, 2, 0), (0, 64, 64)), ((0, 1, 0), (0, 32, 8)), ((2, 1, 2), (64, 32, 64))]


def tiny_classifier(seed=0):
    return tiny.tiny_bert(3, 2, 64, 64, classifier=True, weight_scale=4.0, attn=None, seed=seed)


def inputs(batch=3, length=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length // 2:] = 0  # padding in one row
    return {"input_ids": torch.randint(0, 100, (batch, length), generator=g), "attention_mask": mask}


@pytest.fixture(scope="module")
def reordered():
    model = tiny_classifier()
    torch.manual_seed(3)
    heads = [torch.rand(2) for _ in range(3)]
    neurons = [torch.rand(64) for _ in range(3)]
    return model, reorder_by_importance(model, heads, neurons)[0]


@pytest.fixture(scope="module")
def supernet(reordered):
    from nas.supernet import SuperNetwork

    return SuperNetwork(reordered[1], SPACE, seq_len=16)


def test_skipped_sublayers_extract_to_the_masked_dense_model_and_round_trip(tmp_path, reordered):
    dense = reordered[1]
    sub, plan = extract_subnetwork(dense, [0, 2, 2], [64, 0, 64])
    assert isinstance(sub.bert.encoder.layer[0].attention.self, SkippedSelfAttention)
    assert sub.bert.encoder.layer[0].attention.output.dense.in_features == 0
    assert sub.bert.encoder.layer[1].output.dense.in_features == 0
    reference = tiny_classifier()
    reference.load_state_dict(dense.state_dict())
    with torch.no_grad():  # a skipped sublayer adds only its output bias
        reference.bert.encoder.layer[0].attention.output.dense.weight.zero_()
        reference.bert.encoder.layer[1].output.dense.weight.zero_()
    x = inputs()
    torch.testing.assert_close(sub(**x).logits, reference(**x).logits, atol=1e-5, rtol=0)
    save_pruned(sub, plan, tmp_path / "sub")
    torch.testing.assert_close(load_pruned(tmp_path / "sub")(**x).logits, sub(**x).logits, atol=0, rtol=0)


def test_skipping_attention_is_refused_outside_bert_encoders():
    from pruning import PruningPlan, apply_plan
    from tiny import tiny_t5

    model = tiny_t5()
    n = len(model.encoder.block)
    heads, ffn = model.config.num_heads, model.config.d_ff
    plan = PruningPlan(family="t5", num_decoder_layers=model.config.num_decoder_layers, num_heads=heads, ffn_dim=ffn,
                       kept_decoder_layers=tuple(range(model.config.num_decoder_layers)),
                       kept_encoder_heads=((),) + (tuple(range(heads)),) * (n - 1),
                       kept_encoder_neurons=(tuple(range(ffn)),) * n)
    with pytest.raises(ValueError, match="only for a BERT encoder"):
        apply_plan(model, plan)


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_stock_nncf_fails_without_the_closing_mask_fallback_which_is_undone(reordered):
    import nncf
    from nncf import NNCFConfig
    from nncf.common.pruning.shape_pruning_processor import ShapePruningProcessor
    from nncf.experimental.torch.nas.bootstrapNAS.training.model_creator_helpers import (
        create_compressed_model_from_algo_names,
    )
    from nncf.torch.model_creation import create_nncf_network

    from nas.supernet import bootstrapnas_config, closing_mask_fallback

    stock = ShapePruningProcessor._get_next_node_sparse_multiplier
    import copy

    model = copy.deepcopy(reordered[1])
    config = NNCFConfig.from_dict(bootstrapnas_config(model, SPACE, seq_len=16))
    with pytest.raises(nncf.ValidationError, match="closing mask"):
        create_compressed_model_from_algo_names(create_nncf_network(model, config), config,
                                                ["progressive_shrinking"], dump_graphs=False)
    with closing_mask_fallback():
        assert ShapePruningProcessor._get_next_node_sparse_multiplier is not stock
    assert ShapePruningProcessor._get_next_node_sparse_multiplier is stock


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_every_subnetwork_of_the_supernetwork_equals_its_extracted_model(reordered, supernet):
    dense, permuted = reordered
    x = inputs()
    supernet.activate_maximum_subnet()
    torch.testing.assert_close(supernet.net(**x).logits, dense(**x).logits, atol=1e-5, rtol=0)
    for heads, neurons in CONFIGS:
        supernet.set_active_subnet(heads, neurons)
        sub, _ = extract_subnetwork(permuted, list(heads), list(neurons))
        torch.testing.assert_close(supernet.net(**x).logits, sub(**x).logits, atol=1e-5, rtol=0)
        assert supernet.active_config == (tuple(heads), tuple(neurons))
        torch.testing.assert_close(supernet.get_active_subnet()(**x).logits, sub(**x).logits, atol=1e-5, rtol=0)
    assert supernet.activate_minimum_subnet(2, 2) == supernet.minimum_config(2, 2) == supernet.active_config
    with pytest.raises(ValueError, match="not in the search space"):
        supernet.set_active_subnet((1, 1, 1), (16, 32, 8))  # 1 head is not a choice of layer 2
    supernet.activate_maximum_subnet()


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_progressive_shrinking_opens_the_space_from_the_widest_choices(supernet):
    rng = random.Random(0)
    assert supernet.minimum_config(1, 2) == ((1, 2, 2), (16, 64, 64))  # the widest ceil(n / 2) choices of each layer
    assert supernet.minimum_config(2, 2) == ((0, 1, 0), (0, 32, 8))
    for _ in range(20):
        heads, neurons = supernet.random_config(rng, 1, 2)
        assert all(h in c[len(c) - math.ceil(len(c) / 2):] for h, c in zip(heads, SPACE.head_choices))
        assert all(f in c[len(c) - math.ceil(len(c) / 2):] for f, c in zip(neurons, SPACE.ffn_choices))


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_rebinding_a_functional_captured_before_nncf_was_imported():
    import nncf.torch  # noqa: F401  (wraps torch.nn.functional at import)

    from nas.supernet import rebind_traced_functions

    assert getattr(F.gelu, "__wrapped__", None) is not None

    class Act(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = F.gelu.__wrapped__  # what a model built before NNCF's import holds

    module = Act()
    assert rebind_traced_functions(module) == 1 and module.act is F.gelu
    assert rebind_traced_functions(module) == 0


def test_distillation_loss_is_the_papers_mix():
    from nas.supernet import distillation_loss

    torch.manual_seed(0)
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    p_t = torch.softmax(t / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    expected = 0.1 * F.cross_entropy(s, y) + 0.9 * kl
    torch.testing.assert_close(distillation_loss(s, t, y), expected)
    torch.testing.assert_close(distillation_loss(s, s.clone(), None), torch.tensor(0.0), atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_training_moves_shared_weights_and_extraction_follows_them(tmp_path, reordered):
    from nas.supernet import (SupernetSettings, SuperNetwork, load_supernetwork, save_supernetwork,
                              train_supernetwork)

    dense, permuted = reordered
    net = SuperNetwork(permuted, SPACE, seq_len=16)
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(5, 100, (12,), generator=g).tolist(), "attention_mask": [1] * 12,
             "labels": i % 2} for i in range(24)]
    tokenizer = BertTokenizerFast.from_pretrained(BERT_TINY)
    summary = train_supernetwork(net, dense, rows, tokenizer=tokenizer,
                                 settings=SupernetSettings(max_steps=3, batch_size=8, learning_rate=1e-3))
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    trained = net.dense_model()
    moved = (trained.bert.encoder.layer[0].intermediate.dense.weight
             - permuted.bert.encoder.layer[0].intermediate.dense.weight).abs().max()
    assert moved > 0
    save_supernetwork(net, tmp_path / "sn", tokenizer=tokenizer, info={"task": "test"})
    loaded, space, info = load_supernetwork(tmp_path / "sn")
    assert space == SPACE and info == {"task": "test"}
    x = inputs()
    for heads, neurons in CONFIGS[:2]:
        net.set_active_subnet(heads, neurons)
        sub, _ = extract_subnetwork(loaded, list(heads), list(neurons))
        torch.testing.assert_close(net.net.eval()(**x).logits, sub(**x).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not a saved super-network"):
        load_supernetwork(tmp_path)


@pytest.mark.slow  # ~8 s: an ONNX export
def test_onnx_export_of_a_subnetwork_with_a_skipped_layer_matches_pytorch(tmp_path, reordered):
    from nas.export import export_onnx, onnx_parity

    sub, _ = extract_subnetwork(reordered[1], [0, 1, 2], [16, 0, 64])
    path = export_onnx(sub, tmp_path / "sub.onnx", seq_len=16)
    x = inputs(batch=4, length=24, seed=5)  # another batch size and length than exported with
    assert onnx_parity(sub, path, x["input_ids"], x["attention_mask"]) < 1e-4


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_eftnas_run_end_to_end_on_a_tiny_random_bert(tmp_path):
    from explorer.pipelines.eftnas_settings import EftnasSettings
    from explorer.runs.eftnas_runs import (best_for_budget, extract_for_budget, load_run, reported_split,
                                           run_models)
    from explorer.pipelines.report import front_table
    from explorer.pipelines.eftnas import run_eftnas

    settings = EftnasSettings(model=f"random:{SHARED / 'models' / 'bert-mini'}", task="sst2",
                              data_dir=str(SHARED / "data"), train_samples=48, eval_samples=24, search_samples=16,
                              max_tokens=32, finetune_steps=2, movement_steps=4, supernet_steps=2, batch_size=8,
                              population=4, generations=2, device="cpu")
    stages = []
    summary = run_eftnas(settings, tmp_path / "run", progress=lambda f, m: stages.append(m.split(":")[0]))
    assert {"dense fine-tune", "super-network", "NSGA-II search"} <= set(stages)
    assert summary == load_run(tmp_path / "run") and summary.weights == "random"
    assert summary.search_on == "held-out training examples" and summary.eval_split == "validation"
    front = summary.front
    assert front and all(0 < p.macs_fraction <= 1 for p in front)
    assert [p.macs for p in front] == sorted(p.macs for p in front)
    assert "| dense |" in front_table(summary)
    best = best_for_budget(front, max_macs_fraction=1.0)
    assert best.search_metric == max(p.search_metric for p in front)
    assert best_for_budget(front, max_macs_fraction=0.0) is None
    sub, plan, _ = extract_for_budget(tmp_path / "run", best)
    assert tuple(len(h) for h in plan.kept_encoder_heads) == best.head_widths
    assert tuple(len(n) for n in plan.kept_encoder_neurons) == best.ffn_widths
    _, _, rows, labels = reported_split(tmp_path / "run")
    assert len(rows) == len(labels) == 24
    assert [n for n, _ in run_models(tmp_path / "run", summary)] == ["dense"] + [f"{p.macs_fraction:.0%} MACs"
                                                                                for p in front]
    (name, load), = run_models(tmp_path / "run", summary, ["dense"])
    assert name == "dense" and load()(input_ids=torch.tensor([[101, 2000, 102]])).logits.shape == (1, 2)
    # int8 quality on an EFTNAS run (the script reads the run through the two helpers above).
    int8 = subprocess.run([sys.executable, str(ROOT / "scripts" / "int8_quality.py"), str(tmp_path / "run"), "--only",
                           "dense", "--output-layer", "int8", "--ffn-output", "int8", "fp32"],
                          capture_output=True, text=True, timeout=600)
    assert int8.returncode == 0, int8.stderr[-2000:]
    table = [line for line in int8.stdout.splitlines() if line.startswith("| run | sst2 |")]
    assert len(table) == 2 and "FFN output fp32" in table[1] and "FFN output" not in table[0]

    # The tab's actions: a budget, side-by-side classification, a run on the Pareto front.
    from explorer.pipelines.eftnas_settings import EftnasSettings
    from explorer.runs.eftnas_runs import add_to_pareto, choose, list_eftnas_runs, load_run
    from explorer.backend.eftnas import classify_side_by_side
    from explorer.figures.eftnas import front_figure, importance_figure
    from explorer.backend.pareto import pareto_view

    assert choose(summary, "macs", 100.0) == best
    with pytest.raises(ValueError, match="smallest needs"):
        choose(summary, "latency", 0.0)
    rows = classify_side_by_side(tmp_path / "run", best, "a fine film")
    assert [r[0] for r in rows][0] == "dense" and all(r[1] in ("negative", "positive") for r in rows)
    with pytest.raises(ValueError, match="Type a sentence"):
        classify_side_by_side(tmp_path / "run", best, "  ")
    runs = tmp_path / "runs"
    added = add_to_pareto(tmp_path / "run", best, runs)
    assert load_pruned(added)(input_ids=torch.tensor([[101, 2000, 102]])).logits.shape == (1, 2)
    fig, table, _ = pareto_view("sst2", "gmacs", root=str(runs), references=False, reported=False)
    assert "eftnas" in set(table["method"]) and len(table) == 2  # the subnetwork and its dense model
    assert front_figure(summary, best).data and importance_figure(tmp_path / "run").data
    assert list(list_eftnas_runs(runs)) == [l for l in list_eftnas_runs(runs) if "reference" in l]


def test_eftnas_refuses_what_it_cannot_do(tmp_path):
    from explorer.pipelines.eftnas_settings import EftnasSettings
    from explorer.models.classifier import load_classifier
    from explorer.pipelines.eftnas import run_eftnas

    with pytest.raises(ValueError, match="classification"):
        run_eftnas(EftnasSettings(task="samsum"), tmp_path / "x")
    with pytest.raises(ValueError, match="Unknown classifier"):
        load_classifier("no-such-model", 2)
    with pytest.raises(ValueError, match="BERT-style"):
        load_classifier(f"random:{SHARED / 'models' / 't5-small'}", 2)
    with pytest.raises(ValueError, match="at least 1"):
        EftnasSettings(supernet_steps=0)
    assert not (tmp_path / "x").exists()


def test_examples_keep_their_raw_input_fields_for_encoder_classifiers():
    from explorer.data.splits import load_split

    mrpc = load_split("mrpc", "validation", SHARED / "data", limit=2)
    assert all(len(ex.texts) == 2 and ex.texts[0] in ex.source and ex.texts[1] in ex.source for ex in mrpc)
    (sst2,) = load_split("sst2", "validation", SHARED / "data", limit=1)
    assert sst2.source == "sst2 sentence: " + sst2.texts[0]


DEV_SIZES = {"sst2": 872, "cola": 1043, "mrpc": 408, "rte": 277, "stsb": 1500}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "assets" / "reference_eftnas").iterdir()
                                        if (p / "eftnas.json").is_file()))
def test_every_shipped_eftnas_reference_run_opens_without_weights(name):
    """The shipped GLUE runs (results, no weights): whole dev set, provenance, a budget choice, the
    search space and the importance figure; extraction is refused clearly."""
    import json

    from explorer.runs.eftnas_runs import add_to_pareto, choose, has_supernetwork, list_eftnas_runs, load_run
    from explorer.figures.eftnas import front_figure, importance_figure
    from nas.search_space import SearchSpace

    label = next(l for l in list_eftnas_runs() if l.startswith(name))
    folder = list_eftnas_runs()[label]
    summary = load_run(folder)
    assert summary.weights == "pretrained" and summary.eval_examples == DEV_SIZES[summary.task]
    assert "eftnas_glue.sh" in json.loads((folder / "provenance.json").read_text())["command"]
    point = choose(summary, "macs", 75.0)
    assert point.macs_fraction <= 0.75 and summary.metric in point.eval
    assert not has_supernetwork(folder)
    with pytest.raises(ValueError, match="no super-network weights"):
        add_to_pareto(folder, point)
    space = SearchSpace.from_json(folder / "supernet" / "search_space.json")
    assert len(space.head_choices) == 6 and importance_figure(folder).data
    assert front_figure(summary, point).data


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_a_killed_eftnas_run_resumes_to_the_same_front(tmp_path):
    """Interrupted in the dense fine-tune and again in the super-network training, resumed from the
    last checkpoint each time: the same front as an uninterrupted run (explorer.runs.stages)."""
    from explorer.pipelines.eftnas_settings import EftnasSettings
    from explorer.pipelines.eftnas import run_eftnas
    from explorer.runs.stages import RunFolder

    settings = EftnasSettings(model=f"random:{SHARED / 'models' / 'bert-mini'}", task="sst2",
                              data_dir=str(SHARED / "data"), train_samples=64, eval_samples=24, search_samples=16,
                              max_tokens=32, finetune_steps=5, movement_steps=2, supernet_steps=6, save_steps=2,
                              batch_size=8, population=4, generations=2, device="cpu")
    whole = run_eftnas(settings, tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_at(label, step):
        def progress(fraction, message):
            if message.startswith(f"{label}: step {step}/"):
                raise Killed(message)
        return progress

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        run_eftnas(settings, out, progress=kill_at("dense fine-tune", 3))
    work = RunFolder.work_folder(out)
    assert not out.exists() and (work / "checkpoints" / "dense_finetune" / "checkpoint-2").is_dir()
    with pytest.raises(ValueError, match="--resume"):
        run_eftnas(settings, out)  # the unfinished run is not silently thrown away
    with pytest.raises(ValueError, match="differ: seed"):
        run_eftnas(replace(settings, seed=1), out, resume=True)
    with pytest.raises(Killed):
        run_eftnas(settings, out, progress=kill_at("super-network", 5), resume=True)
    assert (work / "checkpoints" / "supernet" / "checkpoint-4").is_dir()
    resumed = run_eftnas(settings, out, resume=True)
    assert resumed.finetune["resumed_from"] == "checkpoint-2" and resumed.supernet["resumed_from"] == "checkpoint-4"
    assert len(resumed.resumed) == 2 and not work.exists() and not (out / "checkpoints").exists()
    def without_latency(point: dict) -> dict:
        return {k: v for k, v in point.items() if k != "latency_ms"}

    assert [without_latency(p.to_dict()) for p in resumed.front] == [without_latency(p.to_dict()) for p in whole.front]
    assert without_latency(resumed.dense) == without_latency(whole.dense)
    assert resumed.finetune["train_loss"] != 0 and resumed.evaluated == whole.evaluated
    from nas.supernet import load_supernetwork

    a, _, _ = load_supernetwork(tmp_path / "whole" / "supernet")
    b, _, _ = load_supernetwork(out / "supernet")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name, atol=1e-6, rtol=0)


def test_the_eftnas_tab_child_gets_every_setting_as_one_json_document(tmp_path, monkeypatch):
    """The child process of the EFTNAS tab used to get a hand-built argument list that dropped
    stages, learning rates, targets and the seed; now it reads the whole settings document."""
    import subprocess

    from explorer.cli.main import main
    from explorer.pipelines import eftnas, eftnas_process, report
    from explorer.pipelines.eftnas_process import train_in_subprocess
    from explorer.pipelines.eftnas_settings import EftnasSettings

    settings = EftnasSettings(model="minilm", task="rotten_tomatoes", stages=1, learning_rate=3e-5,
                                     supernet_learning_rate=2e-5, targets=(0.5, 0.75), seed=7, keep_best_epoch=True,
                                     finetune_epochs=2.0)
    assert EftnasSettings.from_json(settings.to_json()) == settings
    with pytest.raises(ValueError, match="Malformed"):
        EftnasSettings.from_json('{"model": "minilm", "no_such_setting": 1}')
    seen = {}

    class FakeChild:
        stdout = iter(["[ 50.0%] super-network: step 1/2\n"])

        pid = 123456

        def __init__(self, cmd, **kwargs):
            seen["cmd"] = cmd
            seen["settings"] = EftnasSettings.from_json(open(cmd[cmd.index("--settings-json") + 1]).read())

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    monkeypatch.setattr(eftnas_process, "load_run", lambda out: {"out": str(out)})
    monkeypatch.setattr(eftnas_process, "lower_priority", lambda pid: seen.update(reniced=pid))
    progress = []
    assert train_in_subprocess(settings, tmp_path / "run", progress=lambda f, m: progress.append((f, m)))
    assert seen["settings"] == settings and progress == [(0.5, "super-network: step 1/2")]
    assert seen["reniced"] == FakeChild.pid  # the app's requests come first
    assert not __import__("os").path.exists(seen["cmd"][seen["cmd"].index("--settings-json") + 1])  # cleaned up
    ran = {}
    monkeypatch.setattr(eftnas, "run_eftnas", lambda s, out, progress=None, resume=False: ran.update(s=s) or {})
    monkeypatch.setattr(report, "front_table", lambda summary: "")
    document = tmp_path / "settings.json"
    document.write_text(settings.to_json())
    assert main(["eftnas", "--settings-json", str(document), "--out", str(tmp_path / "out")]) == 0
    assert ran["s"] == settings
