"""Surgery invariants on tiny random models of every family (issue: NASH core, item 4)."""

import json

import pytest
import torch
from tiny import FAMILIES, batch, tiny_t5

from pruning import (PruningPlan, apply_plan, encoder_sparsity, expected_num_parameters, get_adapter, keep_all_plan,
                     load_pruned, plan_from_scores, save_pruned, select_decoder_layers)


def logits(model, b):
    with torch.no_grad():
        return model(**b).logits


def mixed_plan(model, decoder_layers=(0, 2), seed=0):
    """Non-uniform widths per layer: different numbers of heads and neurons removed."""
    g = torch.Generator().manual_seed(seed)
    adapter = get_adapter(model)
    n = len(adapter.encoder_layers(model))
    heads = [torch.rand(adapter.num_heads(model), generator=g) for _ in range(n)]
    neurons = [torch.rand(adapter.ffn_dim(model), generator=g) for _ in range(n)]
    return plan_from_scores(model, heads, neurons, 0.4, decoder_layers)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_keep_everything_plan_is_identity(family):
    model = FAMILIES[family]()
    pruned = apply_plan(model, keep_all_plan(model))
    b = batch()
    assert (logits(pruned, b) - logits(model, b)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", list(FAMILIES))
def test_removing_units_equals_zeroing_their_contribution(family):
    model = FAMILIES[family]()
    adapter = get_adapter(model)
    full_decoder = tuple(range(adapter.num_decoder_layers(model)))
    plan = mixed_plan(model, decoder_layers=full_decoder)
    assert not plan.encoder_is_dense
    # Reference: the dense model with the removed heads' output-projection columns and the
    # removed neurons' output columns set to zero.
    zeroed = FAMILIES[family]()
    for layer, heads, neurons in zip(adapter.encoder_layers(zeroed), plan.kept_encoder_heads, plan.kept_encoder_neurons):
        att = adapter.attention(layer)
        out = getattr(*adapter.ffn(layer).output)
        with torch.no_grad():
            for h in set(range(plan.num_heads)) - set(heads):
                att.o.weight[:, h * att.head_dim:(h + 1) * att.head_dim] = 0
            for j in set(range(plan.ffn_dim)) - set(neurons):
                out.weight[:, j] = 0
    pruned = apply_plan(model, plan)
    b = batch()
    assert (logits(pruned, b) - logits(zeroed, b)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pruned_shapes_and_parameter_count_match_plan(family):
    model = FAMILIES[family]()
    plan = mixed_plan(model)
    pruned = apply_plan(model, plan)
    adapter = get_adapter(pruned)
    for layer, heads, neurons in zip(adapter.encoder_layers(pruned), plan.kept_encoder_heads, plan.kept_encoder_neurons):
        att = adapter.attention(layer)
        assert att.q.out_features == att.k.out_features == att.v.out_features == len(heads) * att.head_dim
        assert att.o.in_features == len(heads) * att.head_dim
        assert getattr(*adapter.ffn(layer).output).in_features == len(neurons)
        for parent, name in adapter.ffn(layer).inputs:
            assert getattr(parent, name).out_features == len(neurons)
    assert len(adapter.decoder_layers(pruned)) == len(plan.kept_decoder_layers)
    assert sum(p.numel() for p in pruned.parameters()) == expected_num_parameters(model, plan)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    # The dense model is untouched (apply_plan works on a copy).
    assert len(adapter.decoder_layers(model)) == 4


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_load_round_trip_gives_identical_outputs(family, tmp_path):
    model = FAMILIES[family]()
    plan = mixed_plan(model, decoder_layers=(1, 3))
    pruned = apply_plan(model, plan)
    out = save_pruned(pruned, plan, tmp_path / "m", extra_files={"metrics.json": {"x": 1}})
    assert json.loads((out / "metrics.json").read_text()) == {"x": 1}
    assert PruningPlan.load(out) == plan
    loaded = load_pruned(out)
    b = batch()
    assert torch.equal(logits(loaded, b), logits(pruned, b))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in pruned.parameters())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generation_cache_indexes_kept_decoder_layers(family):
    model = FAMILIES[family]()
    pruned = apply_plan(model, mixed_plan(model, decoder_layers=(1, 3)))
    ids = batch()["input_ids"]
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        cached = pruned.generate(ids, use_cache=True, **kwargs)
        uncached = pruned.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        assert torch.allclose(a, b, atol=1e-4)


def test_t5_decoder_selection_matches_a_model_built_with_those_layers():
    """Drop decoder block 0 (high selection): the relative position bias must move to the new block 0,
    and the result must equal a fresh k-layer T5 loaded with the kept blocks' weights."""
    model = tiny_t5()
    kept = select_decoder_layers(4, 2, "high")
    plan = PruningPlan("t5", 4, 4, 48, kept, keep_all_plan(model).kept_encoder_heads, keep_all_plan(model).kept_encoder_neurons)
    pruned = apply_plan(model, plan)
    assert pruned.config.num_decoder_layers == 2 and pruned.decoder.config.num_layers == 2
    assert pruned.decoder.block[0].layer[0].SelfAttention.has_relative_attention_bias
    reference = tiny_t5(decoder_layers=2)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("decoder.block."):
            idx = int(key.split(".")[2])
            if idx not in kept:
                continue
            key = key.replace(f"decoder.block.{idx}.", f"decoder.block.{kept.index(idx)}.", 1)
        state[key] = value
    state["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
        model.state_dict()["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    reference.load_state_dict(state)
    b = batch()
    assert (logits(pruned, b) - logits(reference, b)).abs().max().item() <= 1e-5


def test_t5_head_pruning_in_block_zero_keeps_full_position_bias_for_later_blocks():
    model = tiny_t5()
    keep = keep_all_plan(model)
    heads = ((1, 3), (0, 1, 2, 3), (2,))  # block 0 pruned, block 1 dense, block 2 pruned
    plan = PruningPlan("t5", 4, 4, 48, keep.kept_decoder_layers, heads, keep.kept_encoder_neurons)
    pruned = apply_plan(model, plan)
    bias = pruned.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    assert bias.weight.shape[1] == 4  # the shared table keeps every original head
    zeroed = tiny_t5()
    for layer, kept in zip(zeroed.encoder.block, heads):
        att = layer.layer[0].SelfAttention
        with torch.no_grad():
            for h in set(range(4)) - set(kept):
                att.o.weight[:, h * 8:(h + 1) * 8] = 0
    b = batch()
    assert (logits(pruned, b) - logits(zeroed, b)).abs().max().item() <= 1e-4


def test_achieved_sparsity_matches_target():
    model = tiny_t5()
    for target in (0.0, 0.3, 0.6):
        plan = mixed_plan(model) if target == 0.4 else plan_from_scores(
            model, [torch.rand(4) for _ in range(3)], [torch.rand(48) for _ in range(3)], target, (0, 1))
        # Rounding to whole heads (12 in all) and neurons (144) bounds the error.
        assert abs(encoder_sparsity(plan, model) - target) <= 1 / 12


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        PruningPlan("t5", 4, 4, 48, (1, 1), ((0,),), ((0,),))
    with pytest.raises(ValueError, match="outside"):
        PruningPlan("t5", 4, 4, 48, (0, 4), ((0,),), ((0,),))
    with pytest.raises(ValueError, match="at least one decoder layer"):
        PruningPlan("t5", 4, 4, 48, (), ((0,),), ((0,),))
    model = tiny_t5()
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            plan_from_scores(model, [torch.rand(4)] * 3, [torch.rand(48)] * 3, bad, (0,))
    pruned = apply_plan(model, mixed_plan(model))
    with pytest.raises(ValueError, match="dense model"):
        apply_plan(pruned, mixed_plan(model))
    with pytest.raises(ValueError, match="bart"):
        apply_plan(FAMILIES["bart"](), mixed_plan(model))


def test_plan_json_round_trip(tmp_path):
    plan = mixed_plan(tiny_t5())
    plan.save(tmp_path)
    assert PruningPlan.load(tmp_path / "plan.json") == plan
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PruningPlan.load(tmp_path)


def test_decoder_only_model_is_rejected_with_supported_list():
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="decoder-only.*Supported: T5"):
        get_adapter(model)


# -- decoder widths (plan format 2: what CoFi's decoder pruning needs) ------------------------

def narrow_decoder_plan(model, decoder_layers, seed=3):
    """``mixed_plan`` plus random decoder widths: each dense decoder layer keeps a random
    non-empty subset of its self-attention heads, cross-attention heads and FFN neurons."""
    import dataclasses

    g = torch.Generator().manual_seed(seed)
    adapter = get_adapter(model)
    n, heads, ffn = adapter.num_decoder_layers(model), adapter.decoder_num_heads(model), adapter.decoder_ffn_dim(model)

    def subset(size, keep):
        return tuple(sorted(torch.randperm(size, generator=g)[:keep].tolist()))

    return dataclasses.replace(
        mixed_plan(model, decoder_layers=decoder_layers), decoder_num_heads=heads, decoder_ffn_dim=ffn,
        kept_decoder_heads=tuple(subset(heads, 1 + i % heads) for i in range(n)),
        kept_cross_heads=tuple(subset(heads, max(1, heads - 1 - i % heads)) for i in range(n)),
        kept_decoder_neurons=tuple(subset(ffn, ffn // 2 + i) for i in range(n)))


def zero_removed_units(model, plan):
    """The dense model with every unit the plan removes silenced (output-projection columns of
    removed heads and neurons set to zero), encoder and decoder; decoder layers are not dropped."""
    adapter = get_adapter(model)
    with torch.no_grad():
        blocks = [(adapter.attention(layer), adapter.ffn(layer), heads, neurons, plan.num_heads, plan.ffn_dim)
                  for layer, heads, neurons in zip(adapter.encoder_layers(model), plan.kept_encoder_heads,
                                                   plan.kept_encoder_neurons)]
        for i, layer in enumerate(adapter.decoder_layers(model)):
            blocks.append((adapter.attention(layer), adapter.ffn(layer), plan.kept_decoder_heads[i],
                           plan.kept_decoder_neurons[i], plan.decoder_num_heads, plan.decoder_ffn_dim))
            cross = adapter.cross_attention(layer)
            for h in set(range(plan.decoder_num_heads)) - set(plan.kept_cross_heads[i]):
                cross.o.weight[:, h * cross.head_dim:(h + 1) * cross.head_dim] = 0
        for att, ffn, heads, neurons, n_heads, ffn_dim in blocks:
            for h in set(range(n_heads)) - set(heads):
                att.o.weight[:, h * att.head_dim:(h + 1) * att.head_dim] = 0
            out = getattr(*ffn.output)
            for j in set(range(ffn_dim)) - set(neurons):
                out.weight[:, j] = 0
    return model


@pytest.mark.parametrize("family", list(FAMILIES))
def test_narrowing_the_decoder_equals_zeroing_its_units_in_training_and_cached_generation(family):
    model = FAMILIES[family]()
    full = tuple(range(get_adapter(model).num_decoder_layers(model)))
    plan = narrow_decoder_plan(model, full)
    assert plan.narrows_decoder and "decoder cross-attention heads" in plan.describe()
    pruned = apply_plan(model, plan)
    reference = zero_removed_units(FAMILIES[family](), plan)
    b = batch()
    assert (logits(pruned, b) - logits(reference, b)).abs().max().item() <= 1e-4
    from explorer.evaluation.latency import new_cache

    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        got = pruned.generate(b["input_ids"], attention_mask=b["attention_mask"], past_key_values=new_cache(), **kwargs)
        want = reference.generate(b["input_ids"], attention_mask=b["attention_mask"], past_key_values=new_cache(),
                                  **kwargs)
    assert torch.equal(got.sequences, want.sequences)
    for a, c in zip(got.scores, want.scores):
        assert torch.allclose(a, c, atol=1e-4)


def assert_saves_and_loads(pruned, plan, folder):
    """save_pruned then load_pruned gives the same plan, identical logits, and cached generation
    equal to uncached generation."""
    out = save_pruned(pruned, plan, folder)
    assert PruningPlan.load(out) == plan
    loaded = load_pruned(out)
    b = batch()
    assert torch.equal(logits(loaded, b), logits(pruned, b))
    with torch.no_grad():
        cached = loaded.generate(b["input_ids"], max_new_tokens=5, min_new_tokens=5, do_sample=False)
        uncached = loaded.generate(b["input_ids"], max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decoder_widths_with_dropped_layers_save_and_load(family, tmp_path):
    model = FAMILIES[family]()
    plan = narrow_decoder_plan(model, (1, 3))
    pruned = apply_plan(model, plan)
    assert sum(p.numel() for p in pruned.parameters()) == expected_num_parameters(model, plan)
    decoder = get_adapter(pruned).decoder_layers(pruned)
    assert len(decoder) == 2
    assert get_adapter(pruned).cross_attention(decoder[0]).q.out_features == \
        len(plan.kept_cross_heads[1]) * get_adapter(pruned).cross_attention(decoder[0]).head_dim
    assert_saves_and_loads(pruned, plan, tmp_path / "m")


def test_decoder_widths_are_validated_and_version_1_plans_still_load():
    base = dict(family="t5", num_decoder_layers=2, num_heads=4, ffn_dim=48, kept_decoder_layers=(0,),
                kept_encoder_heads=((0,),), kept_encoder_neurons=((0,),))
    with pytest.raises(ValueError, match="one per dense decoder layer"):
        PruningPlan(**base, decoder_num_heads=4, decoder_ffn_dim=48, kept_decoder_heads=((0,),))
    with pytest.raises(ValueError, match="at least one unit"):
        PruningPlan(**base, decoder_num_heads=4, decoder_ffn_dim=48, kept_decoder_heads=((), (1,)))
    with pytest.raises(ValueError, match="outside"):
        PruningPlan(**base, decoder_num_heads=4, decoder_ffn_dim=48, kept_decoder_neurons=((48,), (1,)))
    with pytest.raises(ValueError, match="decoder_num_heads"):
        PruningPlan(**base, kept_decoder_heads=((0,), (1,)))
    PruningPlan(**base, decoder_num_heads=4, decoder_ffn_dim=48, kept_decoder_heads=((0,), ()))  # layer 1 is dropped
    # Files written before format 5 named the kept indices without the kept_ prefix.
    old = PruningPlan.from_dict({"family": "t5", "num_decoder_layers": 2, "num_heads": 4, "ffn_dim": 48,
                                 "decoder_layers": [1], "encoder_heads": [[0, 2]], "encoder_neurons": [[3]],
                                 "notes": {}, "format_version": 1})
    assert not old.narrows_decoder and old.kept_decoder_heads == ()
    assert (old.kept_decoder_layers, old.kept_encoder_heads, old.kept_encoder_neurons) == ((1,), ((0, 2),), ((3,),))
    assert PruningPlan.from_dict(old.to_dict()) == old and old.to_dict()["format_version"] == 5
    with pytest.raises(ValueError, match="decoder has 2 heads"):
        model = tiny_t5()
        import dataclasses
        apply_plan(model, dataclasses.replace(narrow_decoder_plan(model, (0, 1)), decoder_num_heads=2,
                                              kept_decoder_heads=((0,),) * 4, kept_cross_heads=((0,),) * 4))


def hidden_plan(model, decoder_layers, keep=20, seed=5):
    """``narrow_decoder_plan`` plus a random subset of ``keep`` hidden dimensions."""
    import dataclasses

    g = torch.Generator().manual_seed(seed)
    d = get_adapter(model).hidden_size(model)
    dims = tuple(sorted(torch.randperm(d, generator=g)[:keep].tolist()))
    return dataclasses.replace(narrow_decoder_plan(model, decoder_layers), hidden_size=d, kept_hidden_dims=dims)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hidden_dims_cut_every_table_on_the_residual_stream_and_save_and_load(family, tmp_path):
    model = FAMILIES[family]()
    plan = hidden_plan(model, (1, 3))
    assert plan.narrows_hidden and "hidden 32 -> 20" in plan.describe()
    pruned = apply_plan(model, plan)
    assert sum(p.numel() for p in pruned.parameters()) == expected_num_parameters(model, plan)
    widths = {p.shape[-1] for name, p in pruned.named_parameters() if "embed" in name or "shared" in name
              if "relative_attention_bias" not in name}
    assert widths == {20}
    adapter = get_adapter(pruned)
    reads, writes = adapter.layer_hidden_linears(pruned)
    assert {lin.in_features for lin in reads} == {20} and {lin.out_features for lin in writes} == {20}
    tied = [(n, p) for n, p in pruned.named_parameters(remove_duplicate=False) if n.endswith(("lm_head.weight",
                                                                                              "predictions.decoder.weight"))]
    assert all(p.shape[1] == 20 for _, p in tied)
    assert_saves_and_loads(pruned, plan, tmp_path / "m")


def test_hidden_dims_are_validated():
    base = dict(family="t5", num_decoder_layers=2, num_heads=4, ffn_dim=48, kept_decoder_layers=(0,),
                kept_encoder_heads=((0,),) * 3, kept_encoder_neurons=((0,),) * 3)
    with pytest.raises(ValueError, match="hidden_size"):
        PruningPlan(**base, kept_hidden_dims=(0, 1))
    with pytest.raises(ValueError, match="outside"):
        PruningPlan(**base, hidden_size=32, kept_hidden_dims=(0, 32))
    with pytest.raises(ValueError, match="strictly increasing"):
        PruningPlan(**base, hidden_size=32, kept_hidden_dims=(3, 1))
    assert not PruningPlan(**base, hidden_size=32, kept_hidden_dims=tuple(range(32))).narrows_hidden
    model = tiny_t5()
    with pytest.raises(ValueError, match="hidden size 16"):
        apply_plan(model, PruningPlan(**dict(base, num_decoder_layers=4), hidden_size=16, kept_hidden_dims=(0,)))
    plan = hidden_plan(model, (0, 1))
    with pytest.raises(ValueError, match="already narrowed"):
        from pruning.surgery import narrow_hidden
        narrow_hidden(apply_plan(model, plan), plan)
