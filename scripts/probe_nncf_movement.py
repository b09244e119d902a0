"""Does NNCF 2.19's movement sparsity work on a transformers-5 BERT? (EFTNAS issue, item 1; the
README's "first probe"). Builds a tiny random BertForSequenceClassification, wraps it with the
paper's movement-sparsity configuration (32x32 blocks for attention, rows of the FFN intermediate,
columns of the FFN output, importance regularisation 0.02, embeddings / LayerNorm / pooler /
classifier ignored), trains 16 steps, and prints what happened, with structured masking off and on.

    .venv/bin/python scripts/probe_nncf_movement.py
"""

from __future__ import annotations

import os
import tempfile
import traceback

os.environ["NNCF_TORCH_LEGACY_TRACING"] = "1"
os.environ.setdefault("CI", "true")  # no NNCF telemetry


def probe(structured: bool) -> str:
    import torch
    from nncf import NNCFConfig
    from nncf.torch import create_compressed_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=64, attn_implementation="eager"))
    config = NNCFConfig.from_dict({
        "input_info": [{"sample_size": [1, 32], "type": "long", "keyword": "input_ids"},
                       {"sample_size": [1, 32], "type": "long", "keyword": "attention_mask"}],
        "compression": {
            "algorithm": "movement_sparsity",
            "params": {"warmup_start_epoch": 1, "warmup_end_epoch": 3, "importance_regularization_factor": 0.02,
                       "enable_structured_masking": structured, "init_importance_threshold": -0.1,
                       "steps_per_epoch": 4},
            "sparse_structure_by_scopes": [
                {"mode": "block", "sparse_factors": [32, 32], "target_scopes": "{re}.*BertAttention.*"},
                {"mode": "per_dim", "axis": 0, "target_scopes": "{re}.*BertIntermediate.*"},
                {"mode": "per_dim", "axis": 1, "target_scopes": "{re}.*BertOutput.*"}],
            "ignored_scopes": ["{re}.*NNCFEmbedding.*", "{re}.*LayerNorm.*", "{re}.*pooler.*",
                               "{re}.*classifier.*"]}})
    try:
        ctrl, compressed = create_compressed_model(model, config)
        optimizer = torch.optim.AdamW(compressed.parameters(), lr=1e-3)
        for _ in range(4):
            ctrl.scheduler.epoch_step()
            for _ in range(4):
                ctrl.scheduler.step()
                ids = torch.randint(0, 100, (4, 32))
                out = compressed(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.randint(0, 2, (4,)))
                loss = out.loss + ctrl.loss()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return f"trained 16 steps, loss {float(loss):.3f}"
    except Exception as err:  # the probe reports, it does not fix
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return f"fails: {type(err).__name__} {err} at {frame.filename.split('site-packages/')[-1]}:{frame.lineno}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # NNCF writes graph .dot files into the working directory
        for structured in (False, True):
            print(f"| structured masking {'on' if structured else 'off'} | {probe(structured)} |")


if __name__ == "__main__":
    main()
