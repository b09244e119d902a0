"""Surgery invariants of the decoder-only LM families (issue 18), on tiny random Llama (SmolLM2's layout)
and Gemma 3 configs: keep-everything plans are identities; removing heads or FFN neurons equals zeroing
their contribution in the dense model; removing layers equals skipping them; cached and uncached
generation agree; save / load round trips are identical; Gemma 3's per-layer attention types follow the
kept layers."""

import pytest
import torch

from pruning import apply_plan, load_pruned, save_pruned
from pruning.decoder_only import keep_query_heads_per_group, keep_top_neurons, keep_whole_groups, lm_plan
from pruning.surgery import grouped_query_heads


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=12, sliding_window=4,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
                              max_position_embeddings=64)
    return Gemma3ForCausalLM(config).eval()


MODELS = {"llama": tiny_llama, "gemma3": tiny_gemma3}
TOKENS = torch.tensor([[5, 17, 99, 3, 42, 8, 64, 21, 7, 90, 33, 2]])  # longer than Gemma's sliding window


def logits(model, ids=TOKENS):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("family", MODELS)
def test_keep_everything_is_the_identity_and_layer_types_follow_the_kept_layers(family):
    model = MODELS[family]()
    n = model.config.num_hidden_layers
    assert torch.equal(logits(apply_plan(model, lm_plan(model, range(n)))), logits(model))
    kept = (0, 2, 3) if family == "llama" else (1, 2, 5)
    pruned = apply_plan(model, lm_plan(model, kept))
    assert pruned.config.num_hidden_layers == len(kept) and len(pruned.model.layers) == len(kept)
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == list(range(len(kept)))
    if family == "gemma3":
        assert pruned.config.layer_types == ["sliding_attention", "full_attention", "full_attention"]
        assert [a.self_attn.is_sliding for a in pruned.model.layers] == [True, False, False]


@pytest.mark.parametrize("family", MODELS)
def test_removing_layers_equals_skipping_them(family):
    model = MODELS[family]()
    kept = (0, 3) if family == "llama" else (0, 2, 3)
    pruned = apply_plan(model, lm_plan(model, kept))
    skipped = [i for i in range(model.config.num_hidden_layers) if i not in kept]
    originals = {i: model.model.layers[i].forward for i in skipped}
    try:
        for i in skipped:  # the dense model with those layers passing their input through
            model.model.layers[i].forward = lambda hidden_states, *a, **k: hidden_states
        expected = logits(model)
    finally:
        for i, forward in originals.items():
            model.model.layers[i].forward = forward
    torch.testing.assert_close(logits(pruned), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("heads_mode", ["per-group", "whole-groups"])
def test_removing_heads_and_neurons_equals_zeroing_their_contribution(family, heads_mode):
    model = MODELS[family]()
    config = model.config
    h, kv, f = config.num_attention_heads, config.num_key_value_heads, config.intermediate_size
    head_dim = model.model.layers[0].self_attn.head_dim
    gen = torch.Generator().manual_seed(1)
    heads, neurons = [], []
    for _ in range(config.num_hidden_layers):
        scores = torch.rand(h, generator=gen)
        heads.append(keep_query_heads_per_group(scores, kv, (h // kv) - 1) if heads_mode == "per-group"
                     else keep_whole_groups(scores, kv, 1))
        neurons.append(keep_top_neurons(torch.rand(f, generator=gen), f // 2))
    pruned = apply_plan(model, lm_plan(model, range(config.num_hidden_layers), heads, neurons))
    zeroed = apply_plan(model, lm_plan(model, range(config.num_hidden_layers)))  # a copy, zeroed below
    with torch.no_grad():
        for layer, kept_h, kept_n in zip(zeroed.model.layers, heads, neurons):
            for head in set(range(h)) - set(kept_h):
                layer.self_attn.o_proj.weight[:, head * head_dim:(head + 1) * head_dim] = 0
            for neuron in set(range(f)) - set(kept_n):
                layer.mlp.down_proj.weight[:, neuron] = 0
    torch.testing.assert_close(logits(pruned), logits(zeroed), rtol=1e-5, atol=1e-5)
    attention = pruned.model.layers[0].self_attn
    assert attention.q_proj.out_features == len(heads[0]) * head_dim
    kept_kv = 1 if heads_mode == "whole-groups" else kv
    assert attention.k_proj.out_features == attention.v_proj.out_features == kept_kv * head_dim
    assert pruned.model.layers[0].mlp.down_proj.in_features == f // 2
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", MODELS)
def test_cached_and_uncached_generation_agree_and_save_load_round_trips(family, tmp_path):
    model = MODELS[family]()
    config = model.config
    h, kv, f = config.num_attention_heads, config.num_key_value_heads, config.intermediate_size
    n = config.num_hidden_layers
    heads = [keep_query_heads_per_group(torch.arange(h, dtype=torch.float), kv, 1)] * n
    neurons = [tuple(range(0, f, 3))] * n
    plan = lm_plan(model, (0, n - 1), heads, neurons, notes={"method": "test"})
    pruned = apply_plan(model, plan)
    prompt = TOKENS[:, :5]
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = pruned.generate(prompt, use_cache=True, **kwargs)
        uncached = pruned.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    save_pruned(pruned, plan, tmp_path / "run")
    loaded = load_pruned(tmp_path / "run")
    assert type(loaded) is type(model)
    assert torch.equal(logits(loaded), logits(pruned))
    with torch.no_grad():
        assert torch.equal(loaded.generate(prompt, use_cache=True, **kwargs), cached)
    assert "decoder 4 -> 2" in plan.describe() or "decoder 6 -> 2" in plan.describe()
    assert "encoder" not in plan.describe() and "cross" not in plan.describe()


def test_grouped_query_attention_keeps_equal_groups_or_says_what_to_do():
    assert grouped_query_heads((0, 1, 4, 5), 6, 2) == {0: (0, 1), 1: (4, 5)}
    assert grouped_query_heads((3, 4, 5), 6, 2) == {1: (3, 4, 5)}
    with pytest.raises(ValueError, match="same number of query heads in every kept group"):
        grouped_query_heads((0, 1, 4), 6, 2)
    model = tiny_llama()
    n = model.config.num_hidden_layers
    with pytest.raises(ValueError, match="same number of query heads"):
        apply_plan(model, lm_plan(model, range(n), [(0, 1, 4)] * n))
    with pytest.raises(ValueError, match="between 1 and 3"):
        keep_query_heads_per_group(torch.rand(6), 2, 4)
    with pytest.raises(ValueError, match="decoder-only"):
        from tiny import tiny_t5

        lm_plan(tiny_t5(), (0,))


def batches_of(ids=TOKENS):
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)},
            {"input_ids": ids.flip(1), "attention_mask": torch.cat([torch.ones(1, 9), torch.zeros(1, 3)], 1).long()}]


def test_block_influence_and_perplexity_sensitivity_find_a_layer_that_does_nothing():
    from pruning.lm_importance import block_influence, perplexity, perplexity_sensitivity, select_lm_layers

    model = tiny_llama()
    with torch.no_grad():  # layer 2 adds nothing to the residual stream: it is the identity
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    bi = block_influence(model, batches_of())
    assert bi.shape == (4,) and float(bi[2]) == pytest.approx(0.0, abs=1e-6) and bool((bi[[0, 1, 3]] > 1e-3).all())
    ppl = perplexity_sensitivity(model, batches_of())
    assert float(ppl[2]) == pytest.approx(perplexity(model, batches_of()), rel=1e-5)
    kept, scores = select_lm_layers(model, 3, "block-influence", batches_of())
    assert kept == (0, 1, 3) and torch.equal(scores, bi)
    assert select_lm_layers(model, 2, "uniform")[0] == (0, 3)
    with pytest.raises(ValueError, match="calibration texts"):
        select_lm_layers(model, 2, "perplexity")


@pytest.mark.parametrize("criterion", ["taylor", "activation"])
def test_width_scores_are_zero_for_a_head_and_a_neuron_that_contribute_nothing(criterion):
    from pruning.lm_importance import width_scores

    model = tiny_llama()
    head_dim = model.model.layers[1].self_attn.head_dim
    with torch.no_grad():
        if criterion == "taylor":  # head 4's output is never read; neuron 7's is never read
            model.model.layers[1].self_attn.o_proj.weight[:, 4 * head_dim:5 * head_dim] = 0
            model.model.layers[1].mlp.down_proj.weight[:, 7] = 0
        else:  # K/V group 1 (query heads 3-5) has zero values; neuron 7 has a zero up projection
            model.model.layers[1].self_attn.v_proj.weight[head_dim:2 * head_dim] = 0
            model.model.layers[1].mlp.up_proj.weight[7] = 0
    heads, neurons = width_scores(model, batches_of(), criterion)
    assert len(heads) == 4 and heads[1].shape == (6,) and neurons[1].shape == (96,)
    dead = [4] if criterion == "taylor" else [3, 4, 5]
    assert all(float(heads[1][h]) == pytest.approx(0.0, abs=1e-9) for h in dead)
    assert bool((heads[1][[h for h in range(6) if h not in dead]] > 0).all())
    assert float(neurons[1][7]) == pytest.approx(0.0, abs=1e-9) and int((neurons[1] > 0).sum()) == 95
    assert not any(p.grad is not None for p in model.parameters())  # scores only; the model is untouched
