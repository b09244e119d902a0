"""Healing a pruned decoder-only LM (issue 18): a short recovery fine-tune on real text, next-token loss,
on the repository's one training path (``pruning.training``: the transformers ``Trainer``, length-grouped
batches padded per batch, every core).

Two ways, chosen by ``how``:
    * ``lora``: low-rank adapters (Hu et al., ICLR 2022) on every attention and FFN projection through
      ``peft``, merged into the weights afterwards (the saved model is an ordinary pruned model); the
      shortened-LLM papers heal this way (Kim et al. 2024, Sec. 4; Men et al. 2024);
    * ``full``: every weight trains.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HEALINGS = ("lora", "full")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
Progress = Callable[[float, str], None]


def lm_dataset(tokenizer, texts: list[str], max_tokens: int):
    """Texts tokenized once (truncated to ``max_tokens``) as a ``datasets.Dataset`` with a ``length`` column.

    Raises:
        ValueError: For no texts.
    """
    from pruning import training

    def tokenize(batch: dict) -> dict:
        return {"input_ids": tokenizer(batch["text"], truncation=True, max_length=max_tokens)["input_ids"]}

    key = training.fingerprint(texts, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_tokens)
    return training.tokenized_dataset([{"text": t} for t in texts], tokenize, key=key)


def heal(model, tokenizer, texts: list[str], *, steps: int, how: str = "lora", batch_size: int = 8,
         learning_rate: float | None = None, max_tokens: int = 256, lora_rank: int = 8, seed: int = 0,
         device: str = "cpu", progress: Progress | None = None) -> dict:
    """Train ``model`` in place for ``steps`` optimizer steps on ``texts`` (next-token loss on every token).

    Args:
        how: ``lora`` (rank ``lora_rank``, alpha 2 x rank, on :data:`LORA_TARGETS`, merged at the end) or
            ``full``.
        learning_rate: Default 2e-4 for LoRA, 2e-5 for full fine-tuning (constant after 5% warm-up).

    Returns:
        ``{"how", "steps", "train_loss", "wall_s", "trainable_params"}``.

    Raises:
        ValueError: For an unknown ``how``, no texts, or steps below 1.
    """
    from transformers import DataCollatorForLanguageModeling, Trainer

    from pruning import training

    if how not in HEALINGS:
        raise ValueError(f"Unknown healing {how!r}; choose one of {', '.join(HEALINGS)}.")
    if steps < 1:
        raise ValueError(f"Healing needs at least 1 step, got {steps}.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = lm_dataset(tokenizer, texts, max_tokens)
    lr = learning_rate or (2e-4 if how == "lora" else 2e-5)
    trained = model
    if how == "lora":
        from peft import LoraConfig, get_peft_model

        trained = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                                   target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    start = time.perf_counter()
    with training.output_folder(None, "explorer-heal-") as (tmp, _):
        args = training.training_arguments(tmp, max_steps=steps, batch_size=batch_size, learning_rate=lr,
                                           warmup_ratio=0.05, scheduler="constant_with_warmup", seed=seed,
                                           device=device)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        trainer = training.quiet(Trainer(model=trained, args=args, train_dataset=data,
                                         data_collator=training.DropColumns(collator),
                                         callbacks=[training.progress_callback(progress, "healing")] if progress
                                         else []))
        result = trainer.train()
    if how == "lora":
        trained.merge_and_unload()  # the adapters folded into the weights: ``model`` is a plain model again
    model.to("cpu").eval()
    return {"how": how, "steps": steps, "train_loss": float(result.training_loss),
            "wall_s": round(time.perf_counter() - start, 1), "trainable_params": trainable}
