"""Model surgery and NASH: plans, family adapters, layer selection, importance.

Knows torch and transformers only; nothing of the UI, data files or Gradio.
"""

from .accounting import encoder_sparsity, expected_num_parameters
from .adapters import get_adapter, family_of_config, SUPPORTED_ENCODER_DECODER
from .importance import ImportanceScores, keep_all_plan, plan_from_scores, taylor_importance
from .layers import LAYER_SELECTIONS, select_decoder_layers
from .plan import PruningPlan
from .surgery import apply_plan, load_pruned, save_pruned

__all__ = [
    "ImportanceScores", "LAYER_SELECTIONS", "PruningPlan", "SUPPORTED_ENCODER_DECODER", "apply_plan",
    "encoder_sparsity", "expected_num_parameters", "family_of_config", "get_adapter", "keep_all_plan",
    "load_pruned", "plan_from_scores", "save_pruned", "select_decoder_layers", "taylor_importance",
]
