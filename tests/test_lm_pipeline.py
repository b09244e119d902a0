"""The decoder-only LM pipeline end to end on a tiny random Llama (issue 18): prune by depth and width, heal
with LoRA (merged afterwards), evaluate on real SAMSum text, time, save a run that loads; bad settings get
one clear message. Random weights: only shapes, plumbing and invariants are checked, never quality."""

import json

import pytest
import torch
from conftest import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "SAMSum").exists(),
                                reason="../shared/data is not beside the project")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 4-layer Llama with T5's real tokenizer (vocab 32,128), saved as a local folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / "t5-small")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def settings(model, **kw):
    from explorer.pipelines.lm_prune import LMPruneSettings

    base = dict(model=model, layers=2, data_dir=str(SHARED / "data"), calibration_texts=4, eval_texts=6,
                max_tokens=48, batch_size=4, input_tokens=16, new_tokens=4, repeats=1, heal_texts=8)
    return LMPruneSettings(**{**base, **kw})


def test_prune_heal_evaluate_and_the_saved_run_loads(tiny_lm, tmp_path):
    from explorer.pipelines.lm_prune import run_lm_prune
    from pruning import load_pruned

    metrics = run_lm_prune(settings(tiny_lm, selection="perplexity", width_sparsity=0.5, heal_steps=2),
                           tmp_path / "run")
    assert len(metrics["kept_layers"]) == 2 and len(metrics["layer_scores"]) == 4
    assert metrics["healing"]["how"] == "lora" and metrics["healing"]["steps"] == 2
    model = load_pruned(tmp_path / "run")
    assert len(model.model.layers) == 2 and model.model.layers[0].mlp.down_proj.in_features == 48
    assert model.model.layers[0].self_attn.q_proj.out_features == 4 * 8  # 3 query heads per group: floor(1.5) = 1 go
    assert not any("lora" in name for name, _ in model.named_parameters())  # adapters merged, none saved
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["quality"]["pruned"]["num_examples"] == 6 and saved["weights"] == "pretrained"
    diff = saved["difference_vs_dense"]
    assert diff["low"] <= diff["diff"] <= diff["high"]
    dense, pruned = (saved["quality"][k]["metrics"]["perplexity"] for k in ("dense", "pruned"))
    assert diff["diff"] == pytest.approx(pruned - dense, abs=0.02)
    assert saved["measurements"]["pruned"]["params"]["params_m"] < saved["measurements"]["dense"]["params"]["params_m"]


def test_lora_healing_lowers_the_training_loss_and_leaves_a_plain_model(tiny_lm):
    from explorer.models.lm import load_lm
    from explorer.pipelines.lm_prune import text_losses
    from explorer.training.lm_heal import heal

    lm = load_lm(tiny_lm)
    texts = ["Dialogue:\nA: hello there\nB: hi\nSummary: A greets B."] * 8
    before = sum(text_losses(lm.model, lm.tokenizer, texts, 48)[0])
    names = [n for n, _ in lm.model.named_parameters()]
    result = heal(lm.model, lm.tokenizer, texts, steps=20, how="lora", batch_size=4, learning_rate=5e-3)
    assert [n for n, _ in lm.model.named_parameters()] == names
    assert sum(text_losses(lm.model, lm.tokenizer, texts, 48)[0]) < before
    assert 0 < result["trainable_params"] < sum(p.numel() for p in lm.model.parameters()) / 2


@pytest.mark.parametrize("change, message", [
    (dict(width_sparsity=1.0), r"Width sparsity must be in \[0, 1\)"),
    (dict(width_sparsity=-0.1), r"Width sparsity must be in \[0, 1\)"),
    (dict(layers=0), "at least 1"),
    (dict(selection="random"), "Unknown selection 'random'"),
    (dict(heal="qlora"), "Unknown healing"),
    (dict(heal_steps=-1), "0 or more"),
])
def test_bad_settings_say_what_to_change(tiny_lm, change, message):
    with pytest.raises(ValueError, match=message):
        settings(tiny_lm, **change)


def test_more_layers_than_the_model_has_and_unknown_models_are_refused(tiny_lm, tmp_path):
    from explorer.models.lm import load_lm
    from explorer.pipelines.lm_prune import run_lm_prune

    with pytest.raises(ValueError, match="has 4 decoder layers; keep at most 4"):
        run_lm_prune(settings(tiny_lm, layers=5), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="Unknown language model 'gpt-17'"):
        load_lm("gpt-17")
    with pytest.raises(ValueError, match="language-model pruning supports"):
        load_lm(str(SHARED / "models" / "t5-small"))


def test_the_command_line_prunes_an_lm_and_refuses_bad_input_with_one_line(tiny_lm, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "explorer", "prune-lm", "--model", tiny_lm, "--data-dir",
                               str(SHARED / "data"), "--calibration-texts", "4", "--eval-texts", "4",
                               "--max-tokens", "32", "--input-tokens", "8", "--new-tokens", "2", "--repeats", "1",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})

    done = cli("--layers", "2", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decoder 4 -> 2 layers" in done.stdout and "95% CI" in done.stdout
    saved = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    cases = ((("--layers", "9"), "other", "keep at most 4"),
             (("--layers", "2", "--width-sparsity", "1.5"), "other", "Width sparsity must be in"),
             (("--layers", "2"), "run", "exists and is not empty"),
             (("--layers", "9", "--overwrite"), "run", "keep at most 4"))
    for args, out, message in cases:
        bad = cli(*args, "--out", str(tmp_path / out))
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-1500:]
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == saved  # nothing saved changed
    assert not (tmp_path / "other").exists()


def test_nash_given_an_offline_lm_points_to_prune_lm():
    from explorer.models.loading import load_model

    with pytest.raises(ValueError, match="decoder-only LM; NASH needs an encoder-decoder model.*prune-lm"):
        load_model("smollm2-135m")
