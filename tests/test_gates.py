"""Hard-concrete gates, expected sparsity and the Lagrangian (the learned-NASH issue, items 1-2)."""

import math
from dataclasses import replace

import pytest
import torch
from tiny import FAMILIES, batch

from explorer.evaluation.latency import new_cache

from pruning import apply_plan, encoder_sparsity, expected_num_parameters, keep_all_plan
from pruning.gates import DecoderLayerGates, EncoderGates, fold_gates
from pruning.hard_concrete import LOG_ALPHA_RANGE, HardConcrete, Lagrangian, drop_lowest, target_sparsity


def loud(model, scale: float = 10.0):
    """Scale every Linear weight: with BART / BERT's init (std 0.02) the encoder's units change the
    logits by less than the 1e-4 the tests compare at, so a wrong gate could pass unnoticed."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    return model


def test_hard_concrete_distribution_matches_louizos_et_al():
    torch.manual_seed(0)
    gate = HardConcrete(200_000, init_drop_rate=0.5, init_std=0.0)
    assert torch.all(gate.log_alpha == 0)  # log(1 - p) - log(p) at p = 0.5
    z = gate()
    assert z.min() == 0 and z.max() == 1  # stretched then clamped: exact zeros and ones occur
    # With log_alpha = 0: P(z = 0) = P(s < 1/12) and P(z = 1) = P(s > 11/12), s = sigmoid(logit(u) / beta)
    # => P(z = 0) = sigmoid(beta * logit(1/12)); by symmetry P(z = 1) is the same.
    p_zero = 1 / (1 + math.exp(-(2 / 3) * math.log((1 / 12) / (11 / 12))))
    assert (z == 0).float().mean().item() == pytest.approx(p_zero, abs=0.005)
    assert (z == 1).float().mean().item() == pytest.approx(p_zero, abs=0.005)
    # Eq. 12: P(z > 0) = sigmoid(log_alpha - beta log(-l / r)), against Monte Carlo
    gate.log_alpha.data.fill_(1.3)
    mc = (gate() > 0).float().mean().item()
    assert gate.prob_nonzero()[0].item() == pytest.approx(mc, abs=0.005)
    # eval mode: the test-time gate of Eq. 13, deterministic
    gate.eval()
    assert torch.equal(gate(), gate()) and gate()[0].item() == pytest.approx(
        min(1.0, max(0.0, 1 / (1 + math.exp(-1.3)) * 1.2 - 0.1)))


def test_deterministic_gates_drop_the_expected_number_of_zeros_lowest_first():
    gate = HardConcrete(10, init_std=0.0)
    gate.log_alpha.data = torch.tensor([3.0, -3.0, 2.0, -4.0, 1.0, 0.5, -2.0, 4.0, 3.5, -1.0])
    expected_zeros = round(10 - gate.prob_nonzero().sum().item())
    z = gate.deterministic()
    assert (z == 0).sum().item() == expected_zeros > 0
    assert set(torch.nonzero(z == 0).flatten().tolist()) == set(torch.argsort(gate.log_alpha)[:expected_zeros].tolist())
    gate.log_alpha.data.fill_(50.0)
    gate.clamp_()
    assert torch.all(gate.log_alpha == LOG_ALPHA_RANGE[1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_expected_sparsity_equals_a_hand_count(family):
    model = FAMILIES[family]()
    gates = EncoderGates(model)
    # Gates that are surely on (log_alpha large) or surely off (very negative): a hard count.
    for i, (h, n) in enumerate(zip(gates.heads, gates.neurons)):
        h.log_alpha.data.fill_(40.0)
        n.log_alpha.data.fill_(40.0)
        h.log_alpha.data[: i + 1] = -40.0  # layer i loses i + 1 heads
        n.log_alpha.data[: 5 * (i + 1)] = -40.0  # and 5 (i + 1) neurons
    L, H, F = len(gates.heads), gates.num_heads, gates.ffn_dim
    per_head, per_neuron = gates.params_per_head, gates.params_per_neuron
    removed = sum((i + 1) * per_head + 5 * (i + 1) * per_neuron for i in range(L))
    hand = removed / (L * (H * per_head + F * per_neuron))
    assert gates.expected_sparsity().item() == pytest.approx(hand, abs=1e-6)
    # ... and it is the sparsity the resulting plan achieves
    plan = gates.plan(model, kept_decoder_layers=(0,))
    assert encoder_sparsity(plan, model) == pytest.approx(hand, abs=1e-6)
    # per-unit counts by hand for T5 (relu: wi, wo; gated: wi_0, wi_1, wo) and heads (q, k, v, o)
    if family.startswith("t5"):
        cfg = model.config
        assert per_head == 4 * cfg.d_model * cfg.d_kv
        assert per_neuron == (3 if family == "t5-gated" else 2) * cfg.d_model


def test_plan_meets_the_target_when_training_fell_short_lowest_log_alpha_first():
    model = FAMILIES["t5"]()
    gates = EncoderGates(model)
    torch.manual_seed(5)
    for g in list(gates.heads) + list(gates.neurons):
        g.log_alpha.data = torch.empty(len(g.log_alpha)).uniform_(2.0, 4.0)  # all surely kept: sparsity 0
    gates.heads[1].log_alpha.data[:] = torch.linspace(-0.5, 0.5, gates.num_heads)  # layer 1: the weakest heads
    plain = gates.plan(model, kept_decoder_layers=(0,))
    assert encoder_sparsity(plain, model) < 0.1 and "target_enforced" not in plain.notes  # expected zeros only
    plan = gates.plan(model, kept_decoder_layers=(0,), target=0.5)
    assert plan.notes["target_enforced"] is True
    assert encoder_sparsity(plan, model) == pytest.approx(0.5, abs=0.05)
    total_heads = len(gates.heads) * gates.num_heads
    assert total_heads - sum(len(h) for h in plan.kept_encoder_heads) == round(0.5 * total_heads)
    total_neurons = len(gates.neurons) * gates.ffn_dim
    kept_before = sum(len(k) for k in plain.kept_encoder_neurons)
    assert plan.notes["completion_dropped"] == {  # what the step removed beyond the gates' own zeros
        "heads": sum(len(h) for h in plain.kept_encoder_heads) - sum(len(h) for h in plan.kept_encoder_heads),
        "ffn_neurons": kept_before - sum(len(k) for k in plan.kept_encoder_neurons)}
    assert plan.notes["completion_dropped"]["ffn_neurons"] == round(0.5 * total_neurons) - (total_neurons - kept_before)
    assert len(plan.kept_encoder_heads[1]) == 1  # layer 1 lost its heads first, but keeps one
    all_log_alpha = sorted(float(a) for g in gates.heads for a in g.log_alpha.detach())
    removed = [float(gates.heads[l].log_alpha.detach()[h]) for l, kept in enumerate(plan.kept_encoder_heads)
               for h in range(gates.num_heads) if h not in kept]
    assert max(removed) <= all_log_alpha[len(removed)]  # lowest first (one layer-1 head had to stay)
    # A target already met changes nothing.
    met = gates.plan(model, kept_decoder_layers=(0,), target=0.0).notes
    assert met["target_enforced"] is False and met["completion_dropped"] == {"heads": 0, "ffn_neurons": 0}


def test_gates_act_on_the_model_and_detach_cleanly():
    model = FAMILIES["t5"]()
    inputs = batch()
    with torch.no_grad():
        dense = model(**inputs).logits
    gates = EncoderGates(model).attach(model)
    for g in list(gates.heads) + list(gates.neurons):
        g.log_alpha.data.fill_(LOG_ALPHA_RANGE[1])  # every deterministic gate fully open (value 1)
    gates.eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, dense, atol=1e-6)
        gates.heads[0].log_alpha.data[1] = LOG_ALPHA_RANGE[0]
        changed = model(**inputs).logits
    assert not torch.allclose(changed, dense, atol=1e-4)
    gates.detach()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, dense, atol=1e-6)


def test_closed_gates_equal_removing_the_units_by_surgery():
    """Also when every head of a layer is closed: the plan keeps one head (a layer cannot be
    empty) whose weights fold_gates zeroes, so fold + surgery still equals the gated model."""
    model = loud(FAMILIES["bart"]())
    gates = EncoderGates(model)
    torch.manual_seed(3)
    for g in list(gates.heads) + list(gates.neurons):
        g.log_alpha.data = torch.where(torch.rand(len(g.log_alpha)) < 0.4, -40.0, 40.0)
    plan = gates.plan(model, kept_decoder_layers=(0, 1, 2, 3))
    gates.attach(model).eval()
    inputs = batch()
    with torch.no_grad():
        gated = model(**inputs).logits
        gates.detach()
        dense = model(**inputs).logits
        pruned = apply_plan(fold_gates(model, gates), plan)(**inputs).logits
    assert any(len(h) == 1 and gates.heads[i].deterministic().sum() == 0 for i, h in enumerate(plan.kept_encoder_heads))
    assert (gated - dense).abs().max().item() > 1e-2  # the gates did act
    assert (gated - pruned).abs().max().item() <= 1e-4


def test_gradients_reach_the_gates_in_training_mode():
    model = FAMILIES["t5"]().train()
    gates = EncoderGates(model).attach(model).train()
    loss = model(**batch()).loss + gates.expected_sparsity()
    loss.backward()
    assert all(g.log_alpha.grad is not None and g.log_alpha.grad.abs().sum() > 0 for g in gates.heads)


def test_target_ramps_linearly_over_the_warm_up():
    assert [target_sparsity(s, 0.6, 10) for s in (0, 5, 10, 20)] == pytest.approx([0.0, 0.3, 0.6, 0.6])
    assert target_sparsity(0, 0.6, 0) == 0.6
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        target_sparsity(0, 1.0, 10)


def test_lagrangian_ascent_on_the_multipliers_pushes_sparsity_up_to_the_target():
    lag = Lagrangian()
    optimizer = torch.optim.SGD(lag.parameters(), lr=0.1, maximize=True)
    expected = torch.tensor(0.1, requires_grad=True)  # below the target 0.5
    for _ in range(3):
        optimizer.zero_grad()
        lag(expected, 0.5).backward()
        optimizer.step()
    assert lag.lambda1.item() < 0 and lag.lambda2.item() > 0  # ascent: lambda1 (s - t) grows when lambda1 < 0
    # For the model/gates (which minimise), the gradient of the term w.r.t. s is negative: increasing s lowers it.
    expected.grad = None
    lag(expected, 0.5).backward()
    assert expected.grad.item() < 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_folded_and_pruned_model_computes_what_the_gated_model_computed(family):
    model = FAMILIES[family]()
    if family in ("bart", "bert2bert"):
        loud(model)
    gates = EncoderGates(model)
    torch.manual_seed(7)
    for g in list(gates.heads) + list(gates.neurons):
        g.log_alpha.data = torch.empty(len(g.log_alpha)).uniform_(-3.0, 3.0)  # many partly open gates
    assert any(0 < v < 1 for g in gates.heads for v in g.deterministic().tolist())
    decoder = tuple(range(model.config.num_decoder_layers if family.startswith("t5") else
                          (model.config.decoder_layers if family == "bart" else model.config.decoder.num_hidden_layers)))
    plan = gates.plan(model, kept_decoder_layers=decoder)
    gates.attach(model).eval()
    inputs = batch()
    with torch.no_grad():
        gated = model(**inputs).logits
        gates.detach()
        unfolded = apply_plan(model, plan)(**inputs).logits
        assert (unfolded - gated).abs().max().item() > 1e-2  # the gate values matter: the test can fail
        pruned = apply_plan(fold_gates(model, gates), plan)
        assert (pruned(**inputs).logits - gated).abs().max().item() <= 1e-4


DECODER_FAMILIES = ("t5", "bart", "bert2bert")


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_binary_decoder_layer_gates_equal_removing_the_layers(family):
    """Closed layer gates skip their layers exactly (also T5's layer 0, which owns the relative
    position bias, and BERT's post-LN layers): the gated model equals the plan's surgery."""
    model = loud(FAMILIES[family](), 3.0)
    gates = DecoderLayerGates(model, keep=2)
    gates.layers.log_alpha.data = torch.tensor([-2.0, 1.5, -1.0, 2.0])  # keeps layers 1 and 3
    assert gates.kept_layers() == (1, 3) and gates.deterministic().tolist() == [0.0, 1.0, 0.0, 1.0]
    inputs = batch()
    with torch.no_grad():
        dense = model(**inputs).logits
        gates.attach(model).eval()
        gated = model(**inputs).logits
        gates.detach()
        assert torch.allclose(model(**inputs).logits, dense, atol=1e-6)  # detached: the dense model again
        full = apply_plan(model, replace(keep_all_plan(model), kept_decoder_layers=gates.kept_layers()))
        shortened = full(**inputs).logits
    assert (gated - dense).abs().max().item() > 1e-2  # the gates did act
    assert (gated - shortened).abs().max().item() <= 1e-4


def test_decoder_layer_gates_sparsity_target_and_gradients():
    model = FAMILIES["t5"]().train()
    gates = DecoderLayerGates(model, keep=1)
    assert gates.target == pytest.approx(0.75)  # 1 - k / L with L = 4
    gates.layers.log_alpha.data = torch.tensor([40.0, -40.0, -40.0, 40.0])  # 2 of 4 surely kept
    assert gates.expected_sparsity().item() == pytest.approx(0.5, abs=1e-6)
    gates.layers.log_alpha.data = torch.zeros(4)
    gates.attach(model).train()
    loss = model(**batch()).loss + gates.expected_sparsity()
    loss.backward()
    assert gates.layers.log_alpha.grad is not None and torch.all(gates.layers.log_alpha.grad != 0)
    gates.detach()
    with pytest.raises(ValueError, match="between 1 and 4"):
        DecoderLayerGates(model, keep=5)
    with pytest.raises(ValueError, match="no decoder"):
        from transformers import BertConfig, BertModel

        DecoderLayerGates(BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                               intermediate_size=64)), keep=1)


# -- CoFi gates (encoder and decoder, fine- and coarse-grained) -------------------------------

def cofi_with_random_gates(model, seed=0):
    from pruning.cofi import CoFiGates

    g = torch.Generator().manual_seed(seed)
    gates = CoFiGates(model)
    with torch.no_grad():
        for gate in list(gates.units) + list(gates.sublayers.values()) + [gates.hidden]:
            gate.log_alpha.copy_(torch.randn(len(gate.log_alpha), generator=g) * 3)
        gates.sublayers["decoder_cross"].log_alpha[0] = -50.0  # one whole sublayer closed
        gates.sublayers["encoder_ffn"].log_alpha[1] = -50.0
    return gates


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cofi_gates_fold_into_a_smaller_model_that_computes_the_same(family):
    from pruning.cofi import fold_cofi_gates

    model = loud(FAMILIES[family]())
    gates = cofi_with_random_gates(model).attach(model)
    gates.eval()
    b = batch()
    with torch.no_grad():
        want = model(**b).logits
        want_tokens = model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=6,
                                     do_sample=False, past_key_values=new_cache())
    plan = gates.plan(model)
    assert plan.narrows_decoder and not plan.encoder_is_dense and plan.narrows_hidden
    assert all(len(h) >= 1 for h in plan.kept_cross_heads)  # the closed block keeps one unit, folded to zero
    zh = gates.final_hidden()
    assert 0 < (zh == 0).sum() < len(zh) and ((zh > 0) & (zh < 1)).any()  # cut and scaled hidden dims
    pruned = apply_plan(fold_cofi_gates(model, gates), plan)
    assert sum(p.numel() for p in pruned.parameters()) == expected_num_parameters(model, plan)
    with torch.no_grad():
        got = pruned(**b).logits
        got_tokens = pruned.generate(b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=6,
                                     do_sample=False, past_key_values=new_cache())
    assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
    assert torch.equal(got_tokens, want_tokens)


def test_cofi_expected_sparsity_matches_a_hand_count():
    from pruning import get_adapter

    model = FAMILIES["bart"]()
    gates = cofi_with_random_gates(model)
    with torch.no_grad():
        for gate in list(gates.units) + list(gates.sublayers.values()) + [gates.hidden]:
            gate.log_alpha.fill_(100.0)  # P(z > 0) = 1 everywhere
    assert gates.expected_sparsity().item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        gates.sublayers["encoder_ffn"].log_alpha[0] = -100.0  # P = 0: encoder layer 0's FFN expected removed
    adapter = get_adapter(model)
    layer0 = adapter.encoder_layers(model)[0]
    ffn_params = layer0.fc1.weight.numel() + layer0.fc1.bias.numel() + layer0.fc2.weight.numel()
    per_layer = lambda layer, atts: (sum(a.q.weight.numel() + a.k.weight.numel() + a.v.weight.numel()  # noqa: E731
                                         + a.q.bias.numel() + a.k.bias.numel() + a.v.bias.numel() + a.o.weight.numel()
                                         for a in atts)
                                     + layer.fc1.weight.numel() + layer.fc1.bias.numel() + layer.fc2.weight.numel())
    total = sum(per_layer(l, [adapter.attention(l)]) for l in adapter.encoder_layers(model))
    total += sum(per_layer(l, [adapter.attention(l), adapter.cross_attention(l)]) for l in adapter.decoder_layers(model))
    assert gates.total_params() == total
    assert gates.expected_sparsity().item() == pytest.approx(ffn_params / total, rel=1e-5)
    # Half the hidden dimensions expected closed: every weight matrix of a head or neuron loses half its
    # hidden-sized side; biases of Q, K, V and of the FFN input stay. Encoder layer 0's FFN is closed anyway.
    with torch.no_grad():
        gates.hidden.log_alpha[::2] = -100.0
    biases = lambda layer, atts: (sum(a.q.bias.numel() + a.k.bias.numel() + a.v.bias.numel() for a in atts)  # noqa: E731
                                  + layer.fc1.bias.numel())
    bias_total = sum(biases(l, [adapter.attention(l)]) for l in adapter.encoder_layers(model))
    bias_total += sum(biases(l, [adapter.attention(l), adapter.cross_attention(l)]) for l in adapter.decoder_layers(model))
    kept = (total - bias_total - (ffn_params - layer0.fc1.bias.numel())) / 2 + bias_total - layer0.fc1.bias.numel()
    assert gates.expected_sparsity().item() == pytest.approx(1 - kept / total, rel=1e-5)


def test_cofi_gates_learn_and_the_plan_meets_the_target():
    from pruning.cofi import CoFiGates

    model = FAMILIES["t5"]()
    gates = CoFiGates(model).attach(model)
    gates.train()
    loss = model(**batch()).loss + gates.expected_sparsity()
    loss.backward()
    assert all(g.log_alpha.grad is not None for g in gates.units)
    assert all(g.log_alpha.grad is not None for g in gates.sublayers.values())
    gates.detach()
    plan = gates.plan(model, target=0.6)
    removed = sum(p.numel() for p in model.parameters()) - expected_num_parameters(model, plan)
    assert removed / gates.total_params() >= 0.6 - 1e-9
    assert plan.notes["target_enforced"] is True  # untrained gates remove far less than 0.6 by themselves
    assert plan.notes["completion_dropped"]["units"] > 0


def test_cofi_sparsity_of_a_plan_matches_what_the_gates_count():
    """encoder_decoder_sparsity(plan) is the sparsity CoFi's target sets: with binary gates (P(z > 0)
    is 0 or 1) the expected sparsity equals the plan's, hidden dims included."""
    from pruning import encoder_decoder_sparsity

    model = FAMILIES["t5-gated"]()
    gates = cofi_with_random_gates(model)
    with torch.no_grad():
        for gate in list(gates.units) + list(gates.sublayers.values()) + [gates.hidden]:
            gate.log_alpha.copy_(torch.where(gate.log_alpha > 0, 100.0, -100.0))
        for gate in list(gates.units) + [gates.hidden]:
            gate.log_alpha[0] = 100.0  # no vector closes completely (a plan keeps one unit)
        for gate in gates.sublayers.values():
            gate.log_alpha.fill_(100.0)
    plan = gates.plan(model)
    assert plan.narrows_hidden and plan.narrows_decoder
    assert encoder_decoder_sparsity(plan, model) == pytest.approx(gates.expected_sparsity().item(), abs=1e-6)
    assert encoder_decoder_sparsity(keep_all_plan(model), model) == 0.0


def test_drop_lowest_removes_lowest_log_alpha_first_by_cost_and_keeps_one_per_group():
    alphas = [torch.tensor([0.0, -3.0, 1.0]), torch.tensor([-5.0, 2.0])]
    kept = [{0, 1, 2}, {0, 1}]
    assert drop_lowest(alphas, kept, need=2, cost=[1, 1]) == 2
    assert kept == [{0, 2}, {1}]  # -5 and -3 went first, across groups
    assert drop_lowest(alphas, kept, need=0, cost=[1, 1]) == 0 and kept == [{0, 2}, {1}]
    assert drop_lowest(alphas, kept, need=25, cost=[1, 10]) == 1  # more than can go: one unit stays per group
    assert kept == [{2}, {1}]
    kept = [{0, 1, 2}, {0, 1}]
    drop_lowest(alphas, kept, need=10, cost=[1, 10])  # one costly unit meets the need at once
    assert kept == [{0, 1, 2}, {1}]
