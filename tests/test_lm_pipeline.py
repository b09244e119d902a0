"""The decoder-only LM pipeline end to end on a tiny random Llama (issue 18): prune by depth and width, heal
with LoRA (merged afterwards), evaluate on real SAMSum text, time, save a run that loads; bad settings get
one clear message. Random weights: only shapes, plumbing and invariants are checked, never quality."""

import json

import pytest
import torch
from conftest import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "SAMSum").exists(),
                                reason="../shared/data is not beside the project")


def settings(model, **kw):
    from explorer.pipelines.lm_prune import LMPruneSettings

    base = dict(model=model, layers=2, data_dir=str(SHARED / "data"), calibration_texts=4, eval_texts=6,
                max_tokens=48, batch_size=4, input_tokens=16, new_tokens=4, repeats=1, heal_texts=8,
                zero_shot_examples=8, summaries=3)
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
    for name, scored in (("zero_shot_accuracy", 8), ("rougeL", 3)):  # task scores, each with its interval
        t = saved["task_differences"][name]
        assert t["n"] == scored and t["low"] <= t["diff"] <= t["high"]
        assert t["diff"] == pytest.approx(saved["quality"]["pruned"]["metrics"][name]
                                          - saved["quality"]["dense"]["metrics"][name], abs=0.02)
    assert saved["quality"]["pruned"]["summaries"]["prompt"] == "plain"  # T5's tokenizer has no chat template
    assert len(saved["task_outputs"]["pruned"]["summaries"]["texts"]) == 3


def test_label_word_scores_are_the_log_likelihood_of_each_word(tiny_lm):
    """The single-token shortcut (one forward, only the label words' rows of the output layer) and the general
    path (summed log-probabilities of every token of each word) both pick the word a full forward pass prefers."""
    from explorer.evaluation.lm_tasks import SENTIMENT_PROMPT, label_word_predictions
    from explorer.models.lm import load_lm

    lm = load_lm(tiny_lm)
    texts = ["a gorgeous, witty film", "dull and far too long", "it is fine", "what a mess", "moving"]
    tok = lm.tokenizer

    def full_forward(words):
        best = []
        for text in texts:
            prompt = tok(SENTIMENT_PROMPT.format(text=text))["input_ids"]
            scores = []
            for word in words:
                ids = tok(word, add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    logp = torch.log_softmax(lm.model(input_ids=torch.tensor([prompt + ids])).logits[0], -1)
                scores.append(sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(ids)))
            best.append(max(range(len(words)), key=scores.__getitem__))
        return best

    single = (" negative", " positive")
    assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in single)
    assert label_word_predictions(lm.model, tok, texts, batch_size=2) == full_forward(single)
    several = (" terribly bad", " wonderfully good", " so-so")
    assert any(len(tok(w, add_special_tokens=False)["input_ids"]) > 1 for w in several)
    assert label_word_predictions(lm.model, tok, texts, label_words=several, batch_size=3) == full_forward(several)
    with pytest.raises(ValueError, match="non-empty"):
        label_word_predictions(lm.model, tok, ["fine", " "])


def test_summary_prompts_use_the_chat_template_when_there_is_one(tiny_lm):
    from explorer.evaluation.lm_tasks import summary_prompts
    from explorer.models.lm import load_lm

    tok = load_lm(tiny_lm).tokenizer
    prompts, kind = summary_prompts(tok, ["A: hi\nB: hello"])
    assert kind == "plain" and prompts == ["Dialogue:\nA: hi\nB: hello\nSummary:"]
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}" \
                        "{% if add_generation_prompt %}<assistant>{% endif %}"
    prompts, kind = summary_prompts(tok, ["A: hi\nB: hello"])
    assert kind == "chat-template" and prompts[0].startswith("<user>Summarize") and prompts[0].endswith("<assistant>")


def test_an_older_run_gets_its_task_scores_added_and_keeps_the_rest(tiny_lm, tmp_path):
    from explorer.pipelines.lm_prune import add_tasks_to_run, run_lm_prune

    run_lm_prune(settings(tiny_lm, selection="uniform"), tmp_path / "run")
    path = tmp_path / "run" / "metrics.json"
    full = json.loads(path.read_text())
    old = json.loads(json.dumps({k: v for k, v in full.items() if k not in ("task_differences", "task_outputs")}))
    for block in old["quality"].values():
        for key in ("zero_shot_accuracy", "rougeL"):
            block["metrics"].pop(key)
            block["higher_is_better"].pop(key)
        block.pop("zero_shot"), block.pop("summaries")
    path.write_text(json.dumps(old))
    again = add_tasks_to_run(tmp_path / "run")
    assert again["task_differences"] == full["task_differences"]  # the same models score the same
    assert again["quality"] == full["quality"] and again["per_text"] == full["per_text"]
    assert json.loads(path.read_text()) == json.loads(json.dumps(again))
    assert add_tasks_to_run(tmp_path / "run") == again  # a run that has them is left alone


def test_answer_line_takes_the_first_line_with_content_after_a_summary_label():
    from explorer.evaluation.lm_tasks import answer_line

    assert answer_line("Summary:\nAmanda baked cookies.\nBob: ok") == "Amanda baked cookies."  # a base model's
    assert answer_line("Summary: Amanda will come.\nmore") == "Amanda will come."  # a healed model's
    assert answer_line("**Summary:** Bob is late.") == "Bob is late." and answer_line("TL;DR - fine") == "fine"
    assert answer_line("Amanda: hi\nBob: hey") == "Amanda: hi"
    assert answer_line("Summary of the call: x") == "Summary of the call: x"  # not a label
    assert answer_line("Summary:") == answer_line(" \n ") == ""


def test_runs_scored_by_the_first_answer_rule_are_rescored(tiny_lm, tmp_path):
    import copy

    from explorer.pipelines.lm_prune import add_tasks_to_run, run_lm_prune

    run_lm_prune(settings(tiny_lm, selection="uniform"), tmp_path / "run")
    path = tmp_path / "run" / "metrics.json"
    full = json.loads(path.read_text())
    old = copy.deepcopy(full)
    block = old["task_outputs"]["pruned"]["summaries"]
    del block["answer_rule"], block["replies"]  # rule 1 kept each reply's first line, label and all
    block["texts"] = [f"Summary: {t}" for t in block["texts"]]
    block["rougeL"] = [0.0] * len(block["texts"])
    old["quality"]["pruned"]["metrics"]["rougeL"] = 0.0
    path.write_text(json.dumps(old))
    again = add_tasks_to_run(tmp_path / "run")
    assert again["task_outputs"]["pruned"]["summaries"]["texts"] == full["task_outputs"]["pruned"]["summaries"]["texts"]
    assert again["task_differences"] == full["task_differences"] and again["quality"] == full["quality"]
    assert add_tasks_to_run(tmp_path / "run") == again  # up to date now
    block["texts"] = ["Summary:"] * len(block["texts"])  # a bare label: the answer was on a line not kept
    path.write_text(json.dumps(old))
    again = add_tasks_to_run(tmp_path / "run")  # so the pruned model answers again
    assert again["task_outputs"]["pruned"]["summaries"] == full["task_outputs"]["pruned"]["summaries"]


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
                               "--zero-shot-examples", "16", "--summaries", "4", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300,
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
    """Both ways in: loading the model, and ``prune``'s first look at its config (which used to say the Hub was
    offline instead)."""
    from explorer.models.loading import load_model, peek_decoder_layers

    for look in (load_model, peek_decoder_layers):
        with pytest.raises(ValueError, match="decoder-only LM; NASH needs an encoder-decoder model.*prune-lm"):
            look("smollm2-135m")
