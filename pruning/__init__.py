"""Model surgery and NASH: plans, family adapters, layer selection, importance.

Knows torch and transformers only; nothing of the UI, data files or Gradio. Names load on first
use (PEP 562), so importing one light module (``pruning.atomic``, ``pruning.plan``) does not import
the transformers model classes that surgery needs.
"""

import importlib

_WHERE = {
    "encoder_sparsity": "accounting", "expected_num_parameters": "accounting", "encoder_decoder_sparsity": "accounting",
    "get_adapter": "adapters", "family_of_config": "adapters", "SUPPORTED_ENCODER_DECODER": "adapters",
    "ImportanceScores": "importance", "keep_all_plan": "importance", "plan_from_scores": "importance",
    "taylor_importance": "importance",
    "LAYER_SELECTIONS": "layers", "select_decoder_layers": "layers",
    "PruningPlan": "plan",
    "QUANTIZATIONS": "quantization", "quantize": "quantization", "weight_bytes": "quantization",
    "apply_plan": "surgery", "load_pruned": "surgery", "save_pruned": "surgery",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'pruning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
