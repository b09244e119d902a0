"""explorer.evaluation.timing_models: a run restored without its weights (a new machine, from shipped
results) is timed as its architecture, rebuilt from plan.json on the dense model of its family."""

import shutil

import torch

from explorer.evaluation.timing_models import dense_for_timing, pretrained, timing_model
from explorer.models.loading import load_model
from pruning import save_pruned
from pruning.importance import keep_all_plan
from pruning.plan import PruningPlan
from pruning.surgery import apply_plan
from conftest import T5_TOKENIZER
from tiny import save_tiny_t5


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_a_run_without_its_weights_times_as_the_same_shapes_rebuilt_from_its_plan(tmp_path):
    dense_dir = save_tiny_t5(tmp_path / "dense", T5_TOKENIZER)
    dense = load_model(str(dense_dir)).model.eval()
    full = keep_all_plan(dense)
    plan = PruningPlan(**{**full.__dict__, "kept_decoder_layers": full.kept_decoder_layers[:1],
                          "kept_encoder_heads": [h[: max(1, len(h) // 2)] for h in full.kept_encoder_heads],
                          "kept_encoder_neurons": [n[1::3] for n in full.kept_encoder_neurons]})
    save_pruned(apply_plan(dense, plan), plan, tmp_path / "run")
    with_weights, how = timing_model(tmp_path / "run", pretrained(str(dense_dir)))
    assert how == "weights"

    (tmp_path / "restored").mkdir()
    shutil.copy(tmp_path / "run" / "plan.json", tmp_path / "restored" / "plan.json")  # what --restore brings back
    rebuilt, how = timing_model(tmp_path / "restored", pretrained(str(dense_dir)))
    assert how == "architecture" and shapes(rebuilt) == shapes(with_weights) != shapes(dense)
    assert len(rebuilt.decoder.block) == 1 and not rebuilt.training
    ids = torch.ones(1, 8, dtype=torch.long)
    out = rebuilt.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == 4  # it runs: decoder start token + 3


def test_the_dense_model_is_its_fine_tune_when_present_and_else_the_pretrained_one(tmp_path):
    dense_dir = save_tiny_t5(tmp_path / "dense", T5_TOKENIZER)
    run = {"dense_finetune": {"path": str(dense_dir)}, "settings": {"model": str(dense_dir)}}
    assert dense_for_timing(run)[1] == "fine-tuned"
    run["dense_finetune"]["path"] = str(tmp_path / "gone")  # the fine-tune stayed on the old machine
    model, how = dense_for_timing(run)
    assert how == "pretrained" and shapes(model) == shapes(load_model(str(dense_dir)).model)
