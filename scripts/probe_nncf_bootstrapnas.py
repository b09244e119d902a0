"""Does NNCF 2.19's BootstrapNAS elastic width work on a transformers-5 BERT? (EFTNAS issue, item 4;
the README's "super-network" section.) On a tiny random BertForSequenceClassification with the
super-network configuration of ``nas.supernet.bootstrapnas_config``:

1. stock NNCF: building fails with "Next node for cluster ... doesn't have closing mask";
2. with ``nas.supernet.closing_mask_fallback`` (multiplier 1 where that error is raised, the EFTNAS
   authors' fix, applied at run time): the maximal subnetwork equals the dense model and narrower
   ones (a skipped attention and FFN included) equal the physically extracted models.

    .venv/bin/python scripts/probe_nncf_bootstrapnas.py
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

os.environ["NNCF_TORCH_LEGACY_TRACING"] = "1"
os.environ.setdefault("CI", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import nncf
    import torch
    from nncf import NNCFConfig
    from nncf.experimental.torch.nas.bootstrapNAS.training.model_creator_helpers import (
        create_compressed_model_from_algo_names,
    )
    from nncf.torch.model_creation import create_nncf_network
    from transformers import BertConfig, BertForSequenceClassification

    from nas import extract_subnetwork
    from nas.search_space import SearchSpace
    from nas.supernet import SuperNetwork, bootstrapnas_config

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=64)).eval()
    space = SearchSpace(num_heads=2, ffn_dim=128, hidden=64, head_dim=32, head_choices=((0, 1, 2), (1, 2)),
                        ffn_choices=((0, 32, 128), (64, 128)), targets=(0.5,), achieved=(0.5,))
    config = NNCFConfig.from_dict(bootstrapnas_config(model, space, seq_len=16))
    try:
        create_compressed_model_from_algo_names(create_nncf_network(copy.deepcopy(model), config), config,
                                                ["progressive_shrinking"], dump_graphs=False)
        print("1. stock NNCF 2.19: built without error")
    except nncf.ValidationError as err:
        print(f"1. stock NNCF 2.19 fails: {str(err)[:60]}... {str(err)[-40:]}")
    supernet = SuperNetwork(model, space, seq_len=16)
    x = {"input_ids": torch.randint(0, 100, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    print(f"2. with the closing-mask fallback: maximal subnetwork vs dense, max |diff| = "
          f"{(supernet.net(**x).logits - model(**x).logits).abs().max():.2e}")
    for heads, neurons in (((1, 1), (32, 64)), ((0, 2), (128, 64)), ((2, 1), (0, 128))):
        supernet.set_active_subnet(heads, neurons)
        sub, _ = extract_subnetwork(model, list(heads), list(neurons))
        print(f"   heads {heads}, FFN {neurons}: active subnetwork vs extracted model, max |diff| = "
              f"{(supernet.net(**x).logits - sub(**x).logits).abs().max():.2e}")


if __name__ == "__main__":
    main()
