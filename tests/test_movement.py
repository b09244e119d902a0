"""EFTNAS step 1: NNCF 2.19 movement sparsity on a tiny BERT, reduced to heads and neurons (the
EFTNAS issue, item 1)."""

import pytest
import tiny
import torch
from transformers import BertConfig, BertForSequenceClassification

from nas.movement import movement_config, movement_importance, reduce_importance
from pruning import get_adapter


class Pad:
    """The smallest tokenizer the padding collator needs."""

    pad_token_id = 0
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def pad(self, features, padding=True, return_tensors="pt", **kwargs):
        length = max(len(f["input_ids"]) for f in features)
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            extra = length - len(f["input_ids"])
            out["input_ids"].append(list(f["input_ids"]) + [0] * extra)
            out["attention_mask"].append(list(f["attention_mask"]) + [0] * extra)
            out["labels"].append(f["labels"])
        return {k: torch.tensor(v) for k, v in out.items()}


def tiny_classifier():
    return tiny.tiny_bert(2, 2, 64, 96, classifier=True, vocab=60, positions=40)


def rows(n=64, seed=0):
    """Label 1 when token 7 occurs: learnable, so the weights (and their importance) move."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(10, 60, (12,), generator=g)
        label = int(torch.rand(1, generator=g) < 0.5)
        if label:
            ids[int(torch.randint(1, 12, (1,), generator=g))] = 7
        out.append({"input_ids": ids.tolist(), "attention_mask": [1] * 12, "labels": label})
    return out


def test_reduction_sums_head_blocks_over_q_k_v_and_adds_ffn_rows_and_columns():
    model = tiny_classifier()
    adapter = get_adapter(model)
    g = torch.Generator().manual_seed(1)
    table = {id(m): torch.randn(m.weight.shape, generator=g) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    heads, neurons = reduce_importance(model, lambda lin: table.get(id(lin)))
    layer = adapter.encoder_layers(model)[1]
    att, ffn = adapter.attention(layer), adapter.ffn(layer)
    q, k, v = (table[id(lin)] for lin in (att.q, att.k, att.v))
    want = sum(w[32:64].mean() for w in (q, k, v))  # head 1 owns rows 32..63 of Q, K and V
    assert heads[1][1].item() == pytest.approx(want.item(), rel=1e-5)
    inter, out = table[id(getattr(*ffn.inputs[0]))], table[id(getattr(*ffn.output))]
    assert neurons[1][5].item() == pytest.approx((inter[5].mean() + out[:, 5].mean()).item(), rel=1e-5)
    assert [h.shape for h in heads] == [(2,), (2,)] and [n.shape for n in neurons] == [(96,), (96,)]


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_movement_sparsity_trains_through_nncf_and_gives_scores_per_head_and_neuron():
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    heads, neurons, summary = movement_importance(model, rows(), tokenizer=Pad(), max_steps=16, batch_size=8,
                                                  learning_rate=1e-3, seq_len=12, epochs=4)
    assert [h.shape for h in heads] == [(2,), (2,)] and [n.shape for n in neurons] == [(96,), (96,)]
    # Importance started equal everywhere and moved: the scores now differ between units.
    assert all(n.std() > 0 for n in neurons) and torch.stack(heads).std() > 0
    assert summary["steps"] == 16 and 0.0 <= summary["sparsity_level_for_layers"] <= 1.0
    # Q, K, V, attention output, FFN intermediate and output of each layer; no embedding, pooler or classifier.
    assert len(summary["sparsified"]) == 12
    assert not any(word in name for name in summary["sparsified"] for word in ("embed", "pooler", "classifier"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    cfg = movement_config(128, steps_per_epoch=10)
    assert cfg["compression"]["params"]["importance_regularization_factor"] == 0.02
    assert cfg["compression"]["sparse_structure_by_scopes"][0]["sparse_factors"] == [32, 32]


@pytest.mark.slow
@pytest.mark.isolated  # imports NNCF
def test_blocks_must_fit_the_head_size():
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    with pytest.raises(ValueError, match="divisible by 32"):
        movement_importance(BertForSequenceClassification(config), rows(4), tokenizer=Pad(), max_steps=1)
