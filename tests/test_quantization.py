"""int8 weights after pruning (pruning.quantization): quantize, save / load through plan.json, and
the prune / measure commands with --quantize."""

import json

import pytest
import torch
from conftest import SHARED, T5_TOKENIZER
from tiny import FAMILIES, batch, tiny_bert

from explorer.cli.main import main
from explorer.evaluation.latency import new_cache
from pruning import PruningPlan, apply_plan, keep_all_plan, load_pruned, quantize, save_pruned, weight_bytes
from pruning.quantization import ffn_output_layers, is_quantized

SAMSUM = SHARED / "data" / "SAMSum"


@pytest.mark.parametrize("family", ["t5", "bart", "bert2bert"])
def test_int8_copy_is_smaller_close_to_fp32_and_leaves_the_original_alone(family):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize(model, "int8")
    assert is_quantized(q) and not is_quantized(model) and quantize(model, "none") is model
    assert weight_bytes(q) < weight_bytes(model)
    inputs = batch()
    with torch.no_grad():
        a, b = model(**inputs).logits, q(**inputs).logits
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    with pytest.raises(ValueError, match="Unknown quantization"):
        quantize(model, "int4")


def test_per_channel_scales_keep_a_row_of_small_weights_that_one_scale_per_tensor_rounds_away():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(64, 8))
    with torch.no_grad():
        layer[0].weight[0] *= 200  # one large row sets the per-tensor scale
    x = torch.randn(4, 64)
    with torch.no_grad():
        exact = layer(x)[:, 1:]
        errors = {s: (quantize(layer, "int8", scales=s)(x)[:, 1:] - exact).abs().max().item()
                  for s in ("tensor", "channel")}
    assert errors["channel"] * 10 < errors["tensor"]
    weight, _ = quantize(layer, "int8", scales="channel")[0]._packed_params._weight_bias()
    assert weight.qscheme() == torch.per_channel_affine and weight.q_per_channel_scales().shape == (8,)
    with pytest.raises(ValueError, match="Unknown int8 scales"):
        quantize(layer, "int8", scales="row")


@pytest.mark.parametrize("family", ["t5", "t5-gated", "bart", "bert2bert", "bert-classifier", "llama"])
def test_ffn_output_layers_are_one_per_ffn_block_and_stay_fp32_when_kept(family):
    if family == "bert-classifier":
        model = tiny_bert(layers=3, classifier=True)
        blocks = 3
    elif family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                             num_attention_heads=4, num_key_value_heads=2)).eval()
        blocks = 3
    else:
        model = FAMILIES[family]().eval()
        config = model.config
        blocks = (config.encoder.num_hidden_layers + config.decoder.num_hidden_layers if family == "bert2bert"
                  else config.num_layers + config.num_decoder_layers if family.startswith("t5")
                  else config.encoder_layers + config.decoder_layers)
    names = ffn_output_layers(model)
    assert len(names) == blocks and not any("attention" in n or "SelfAttention" in n for n in names)
    q = quantize(model, "int8", keep_fp32=names)
    modules = dict(q.named_modules())
    assert all(type(modules[n]) is torch.nn.Linear for n in names) and is_quantized(q)


@pytest.mark.parametrize("family", ["t5", "bert2bert"])
def test_int8_of_a_layer_with_every_head_and_neuron_removed_runs(family):
    """A layer left with no heads (BERT only) or no FFN neurons has empty Linear layers; int8 leaves
    them alone instead of failing on their empty activations (found on an EFTNAS subnetwork)."""
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    base = keep_all_plan(model)
    first_heads = [] if family == "bert2bert" else base.kept_encoder_heads[0][:1]
    plan = PruningPlan(**{**base.__dict__, "kept_encoder_heads": [first_heads, *base.kept_encoder_heads[1:]],
                          "kept_encoder_neurons": [[], *base.kept_encoder_neurons[1:]]})
    pruned = apply_plan(model, plan)
    q = quantize(pruned, "int8")
    assert is_quantized(q)
    inputs = batch()
    with torch.no_grad():
        a, b = pruned(**inputs).logits, q(**inputs).logits
    assert torch.isfinite(b).all()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98


def test_quantization_is_recorded_in_plan_json_and_applied_at_load(tmp_path):
    torch.manual_seed(0)
    model = FAMILIES["t5"]().eval()
    base = keep_all_plan(model)
    plan = PruningPlan(**{**base.__dict__, "kept_encoder_heads": [h[:2] for h in base.kept_encoder_heads],
                          "quantization": "int8"})
    pruned = apply_plan(model, plan)
    save_pruned(pruned, plan, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["quantization"] == "int8"
    assert "int8 Linear weights" in plan.describe()
    first, second = load_pruned(tmp_path / "run"), load_pruned(tmp_path / "run")
    fp32 = load_pruned(tmp_path / "run", quantized=False)
    assert is_quantized(first) and not is_quantized(fp32)
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(first(**inputs).logits, second(**inputs).logits)  # the same int8 weights
        ids = first.generate(input_ids=inputs["input_ids"], max_new_tokens=3, past_key_values=new_cache())
    assert ids.shape[1] >= 2
    with pytest.raises(ValueError, match="Unknown quantization"):
        PruningPlan(**{**base.__dict__, "quantization": "fp8"})


@pytest.mark.skipif(not SAMSUM.exists() or not T5_TOKENIZER.exists(), reason="../shared is not beside the project")
@pytest.mark.slow
def test_prune_with_int8_reports_fp32_and_int8_and_measure_times_int8(tiny_t5_dir, isolated_cache, tmp_path, capsys):
    model = tiny_t5_dir
    out = tmp_path / "run"
    code = main(["prune", "--model", str(model), "--task", "samsum", "--data-dir", str(SAMSUM),
                 "--encoder-sparsity", "0.5", "--decoder-layers", "2", "--finetune-steps", "1", "--batch-size", "2",
                 "--train-samples", "8", "--eval-samples", "3", "--calibration-samples", "2", "--input-tokens", "16",
                 "--new-tokens", "4", "--repeats", "1", "--quantize", "int8", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "| pruned (int8) |" in stdout and "| pruned (fp32) |" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["quality"]) == {"dense", "pruned", "pruned_fp32"}
    assert metrics["intervals"]["int8_vs_fp32"]["n"] == 3
    int8, fp32 = metrics["measurements"]["pruned"], metrics["measurements"]["pruned_fp32"]
    assert int8["weight_mb"] > 0 and int8["macs"] == fp32["macs"]  # same products, in int8
    assert int8["params"] == fp32["params"]
    assert len(json.loads((out / "predictions.json").read_text())["pruned_fp32"]) == 3
    assert is_quantized(load_pruned(out)) and "int8" in PruningPlan.load(out).describe()
    code = main(["measure", "--model", str(out), "--input-tokens", "16", "--new-tokens", "4", "--repeats", "1"])
    table = capsys.readouterr().out
    assert code == 0 and "weights (MB)" in table
    row = table.splitlines()[2].split("|")
    assert float(row[4]) == pytest.approx(int8["macs"]["gmacs"], abs=0.01)  # MACs counted on the fp32 weights
    code = main(["measure", "--model", str(model), "--quantize", "int8", "--input-tokens", "16", "--new-tokens", "4",
                 "--repeats", "1"])
    assert code == 0
