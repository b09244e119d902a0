"""Task scores of a decoder-only LM (issue 18), per example so that a paired bootstrap can compare two models:

- **zero-shot classification** by label-word log-likelihood: the class whose label word (``" negative"``,
  ``" positive"``) the model finds most likely after a prompt, with no training on the task (the multiple-choice
  scoring of GPT-3, Brown et al. 2020, Sec. 2.4; the prompt is the one ``lm-evaluation-harness`` uses for SST-2);
- **instruction summarization**: greedy generation from the model's own chat template (a plain
  ``"Dialogue: ... Summary:"`` prompt for a model without one, e.g. a base model), scored with ROUGE
  (``explorer.evaluation.metrics.rouge_per_example``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from explorer.evaluation.latency import model_device

SENTIMENT_PROMPT = "{text}\nQuestion: Is this sentence positive or negative?\nAnswer:"
SENTIMENT_WORDS = (" negative", " positive")  # label 0, label 1
SUMMARY_INSTRUCTION = "Summarize this dialogue in one sentence.\n\n{dialogue}"
PLAIN_SUMMARY_PROMPT = "Dialogue:\n{dialogue}\nSummary:"
# The rule that turns a raw reply into the scored answer (:func:`answer_line`); runs and cached dense outputs
# record it, so a change of rule re-scores them (``explorer.pipelines.lm_prune.add_tasks_to_run``).
# 1: the first line of the reply; 2: the first line with content after a leading "Summary:" / "TL;DR:" label.
ANSWER_RULE = 2
_LABEL = re.compile(r"^\W*(?:summary|tl;?dr)\W*?[:\-]\W*", re.IGNORECASE)


@torch.no_grad()
def label_word_predictions(model, tokenizer, texts: Sequence[str], *, template: str = SENTIMENT_PROMPT,
                           label_words: Sequence[str] = SENTIMENT_WORDS, max_tokens: int = 256,
                           batch_size: int = 16) -> list[int]:
    """Zero-shot class of each text: ``argmax_c sum_t log p(word_c[t] | prompt, word_c[:t])`` over the label
    words (summed log-likelihood of each word's tokens after ``template.format(text=...)``).

    Args:
        texts: (N,) input texts; each prompt is truncated from the left of the text to ``max_tokens`` tokens.
        label_words: (C,) continuations, in class-id order.

    Returns:
        (N,) class ids in [0, C).

    Raises:
        ValueError: If a text or a label word is empty.
    """
    if any(not t or not t.strip() for t in texts):
        raise ValueError("Every text to classify must be non-empty.")
    words = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in label_words]
    if not words or any(not w for w in words):
        raise ValueError(f"Every label word must tokenize to at least one token, got {list(label_words)!r}.")
    device = model_device(model)
    model.eval()
    prompts = [tokenizer(template.format(text=t.strip()))["input_ids"][-max_tokens:] for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if all(len(w) == 1 for w in words):
        return _single_token_predictions(model, prompts, [w[0] for w in words], pad, batch_size, device)
    scores = torch.empty(len(texts), len(words))
    for c, word in enumerate(words):
        for start in range(0, len(prompts), batch_size):
            rows = [p + word for p in prompts[start:start + batch_size]]
            ids, mask = _right_padded(rows, pad, device)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
            for b, row in enumerate(rows):
                first = len(row) - len(word)  # position of the word's first token
                positions = torch.arange(first - 1, len(row) - 1, device=device)
                scores[start + b, c] = logp[b, positions, torch.tensor(word, device=device)].sum().cpu()
    return scores.argmax(1).tolist()


def _right_padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids right-padded with ``pad`` and their attention mask."""
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask


def _single_token_predictions(model, prompts: list[list[int]], word_ids: list[int], pad: int, batch_size: int,
                              device) -> list[int]:
    """With one token per label word all words are scored at the same position, where they share the softmax's
    normaliser (and any monotone logit soft-capping): the largest of their logits wins. Only those rows of the
    output embedding are applied, to the hidden state after each prompt's last token."""
    head = model.get_output_embeddings()
    rows = head.weight[torch.tensor(word_ids, device=device)]  # (C, H)
    bias = head.bias[torch.tensor(word_ids, device=device)] if getattr(head, "bias", None) is not None else 0
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask = _right_padded(batch, pad, device)
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(batch), device=device), torch.tensor([len(p) - 1 for p in batch], device=device)]
        out += (last.float() @ rows.float().T + bias).argmax(1).tolist()  # (B, C) -> (B,)
    return out


def chat_prompt(tokenizer, message: str) -> str:
    """``message`` as the user's turn through the tokenizer's chat template, the assistant's turn opened; the
    message itself when the tokenizer has none (a base model continues it)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)
    return message


def summary_prompts(tokenizer, dialogues: Sequence[str]) -> tuple[list[str], str]:
    """One prompt per dialogue: the user turn ``SUMMARY_INSTRUCTION`` through the tokenizer's chat template with
    the assistant's turn opened, or ``PLAIN_SUMMARY_PROMPT`` when the tokenizer has no chat template.

    Returns:
        (prompts, ``"chat-template"`` or ``"plain"``).
    """
    if getattr(tokenizer, "chat_template", None):
        return [chat_prompt(tokenizer, SUMMARY_INSTRUCTION.format(dialogue=d)) for d in dialogues], "chat-template"
    return [PLAIN_SUMMARY_PROMPT.format(dialogue=d) for d in dialogues], "plain"


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 48, batch_size: int = 8,
                     max_prompt_tokens: int = 512,
                     progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Greedy continuation of each prompt (left-padded batches in order of length, KV cache on), decoded without
    special tokens, only the new tokens (the raw reply; :func:`answer_line` takes the answer out of it).

    Args:
        prompts: (N,) full prompt texts (chat template already applied); truncated from the left to
            ``max_prompt_tokens`` tokens.
        max_new_tokens: Upper bound on new tokens; generation also stops at the model's EOS.

    Returns:
        (N,) replies in the order of ``prompts``, stripped of surrounding whitespace.
    """
    device = model_device(model)
    model.eval()
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"][-max_prompt_tokens:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    out = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in index)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in index], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in index], device=device)
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=eos,
                                   repetition_penalty=1.0)
        for i, row in zip(index, generated[:, width:]):
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
        if progress:
            progress(min(1.0, (start + len(index)) / len(order)), f"generated {start + len(index)}/{len(order)}")
    return out


def answer_line(reply: str) -> str:
    """The scored answer of a raw reply (rule ``ANSWER_RULE`` = 2): its first line that has content once a leading
    ``Summary:`` / ``TL;DR:`` label (any case, with markdown around it) is removed. One line, because small models
    otherwise go on to continue the dialogue; the label goes because it is not part of the summary (a base model
    such as Gemma-3-270M answers ``"Summary:\\n<text>"``; healed models learn ``"Summary: <text>"`` from the
    healing data). ``""`` when no line has content.
    """
    for line in reply.split("\n"):
        text = _LABEL.sub("", line.strip(), count=1).strip()
        if text:
            return text
    return ""


def summarize_dialogues(model, tokenizer, dialogues: Sequence[str], references: Sequence[str], *,
                        max_new_tokens: int = 48, batch_size: int = 8,
                        progress: Callable[[float, str], None] | None = None) -> dict:
    """Instruction summaries of ``dialogues`` (:func:`summary_prompts`, :func:`generate_replies`) and their ROUGE.

    Returns:
        ``{"prompt": "chat-template" | "plain", "replies": (N,) raw replies, "summaries": (N,) their
        :func:`answer_line`, "rouge": {"rouge1", "rouge2", "rougeL", "rougeLsum"} -> (N,) per-example F-measures
        of the summaries in percent}``.

    Raises:
        ValueError: If the lists differ in length or are empty.
    """
    from explorer.evaluation.metrics import rouge_per_example

    if len(dialogues) != len(references) or not dialogues:
        raise ValueError(f"Need as many references as dialogues (and at least one): {len(dialogues)} dialogues, "
                         f"{len(references)} references.")
    prompts, kind = summary_prompts(tokenizer, dialogues)
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               progress=progress)
    summaries = [answer_line(r) for r in replies]
    return {"prompt": kind, "replies": replies, "summaries": summaries,
            "rouge": rouge_per_example(summaries, references)}
