"""Gate training on the Trainer (the learned-NASH issue, items 2-3 and 5: the CPU single-process path)."""

import pytest
import torch
from conftest import SHARED

from explorer.training.gates import LearnedSettings, layer_distillation_loss, train_gates
from explorer.models.loading import LoadedModel
from explorer.data.tasks import Example
from pruning import encoder_sparsity

T5_DIR = SHARED / "models" / "t5-small"
pytestmark = pytest.mark.skipif(not T5_DIR.exists(), reason="../shared/models is not beside the project")


@pytest.fixture(scope="module")
def dense():
    from transformers import AutoTokenizer
    from tiny import tiny_t5

    tokenizer = AutoTokenizer.from_pretrained(T5_DIR)
    model = tiny_t5()
    model.resize_token_embeddings(len(tokenizer))
    model.config.decoder_start_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, "tiny", "t5", "test")


EXAMPLES = [Example(source=f"summarize: item {i} is on the table and {i % 3} more are in the box.",
                    target=f"item {i} on table") for i in range(32)]


@pytest.mark.parametrize("distill", [True, False])
@pytest.mark.slow
def test_gate_training_moves_expected_sparsity_to_the_target_and_yields_a_smaller_model(dense, distill):
    settings = LearnedSettings(target_sparsity=0.5, max_steps=40, warmup_steps=10, batch_size=8,
                               gate_learning_rate=0.2, lambda_learning_rate=0.5, distill=distill)
    seen = []
    plan, pruned, summary = train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 3),
                                        progress=lambda f, m: seen.append(m))
    assert len(seen) == 40 and seen[-1].startswith("gate training: step 40/40")
    assert summary["target"] == 0.5 and summary["lambda1"] != 0.0
    assert ("kl" in summary) == distill and summary["expected_sparsity"] > 0.3  # started near 0 (drop rate 0.5 gates)
    assert plan.kept_decoder_layers == (0, 3) and plan.notes["distill"] == distill
    achieved = encoder_sparsity(plan, dense.model)
    assert 0.45 < achieved < 0.75 and isinstance(plan.notes["target_enforced"], bool)
    trace = summary["sparsity_trace"]
    assert [step for step, _ in trace] == list(range(2, 41, 2)) and trace[-1][1] == pytest.approx(
        summary["expected_sparsity"], abs=1e-4)
    reached = summary["target_reached_step"]
    assert reached is None or (reached > 10 and any(v >= 0.495 for s, v in trace if s >= reached))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.model.parameters())
    with torch.no_grad():
        ids = dense.tokenizer(["summarize: item 3 is here"], return_tensors="pt")
        out = pruned.generate(**ids, max_new_tokens=3)
    assert out.shape[1] >= 2


@pytest.mark.slow
def test_learned_decoder_layers_keep_k_layers_chosen_by_their_gates(dense):
    settings = LearnedSettings(target_sparsity=0.3, max_steps=30, warmup_steps=10, batch_size=8,
                               gate_learning_rate=0.2, lambda_learning_rate=0.5)
    plan, pruned, summary = train_gates(dense, EXAMPLES, settings, task="samsum", learned_decoder_layers=2)
    assert summary["decoder_target"] == 0.5  # 1 - 2 / 4
    assert summary["decoder_expected_sparsity"] > 0.2 and summary["decoder_lambda1"] != 0.0  # started near 0
    log_alpha = torch.tensor(summary["gates"]["decoder_log_alpha"])
    from pruning.hard_concrete import LOG_ALPHA_RANGE

    assert LOG_ALPHA_RANGE[0] <= log_alpha.min() and log_alpha.max() <= LOG_ALPHA_RANGE[1]  # clamped every step
    assert plan.kept_decoder_layers == tuple(sorted(torch.argsort(log_alpha, descending=True)[:2].tolist()))
    assert plan.notes["decoder_layers_learned"] is True
    n_dec = len(pruned.decoder.block)
    assert n_dec == 2
    with pytest.raises(ValueError, match="not both"):
        train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 1), learned_decoder_layers=2)


def test_clamping_after_a_step_covers_encoder_and_decoder_gates():
    from tiny import tiny_t5

    from explorer.training.gates import GatedModel
    from pruning.gates import DecoderLayerGates, EncoderGates
    from pruning.hard_concrete import LOG_ALPHA_RANGE, Lagrangian

    student = tiny_t5()
    wrapped = GatedModel(student, EncoderGates(student), Lagrangian(), DecoderLayerGates(student, 2), Lagrangian())
    for p in wrapped.gate_parameters():
        p.data.fill_(50.0)
    wrapped.clamp_()
    assert [p.max().item() for p in wrapped.gate_parameters()] == pytest.approx(
        [LOG_ALPHA_RANGE[1]] * len(wrapped.gate_parameters()))


def test_learned_layer_selection_needs_the_learned_method():
    from explorer.pipelines.nash_settings import PruneSettings

    with pytest.raises(ValueError, match="nash-learned"):
        PruneSettings(model="x", task="samsum", encoder_sparsity=0.3, decoder_layers=2, layer_selection="learned",
                      method="nash-training-free").check()


def test_layer_distillation_matches_each_teacher_layer_to_its_closest_student_layer():
    torch.manual_seed(0)
    teacher = tuple(torch.randn(2, 5, 4) for _ in range(3))
    mask = torch.ones(2, 5)
    assert layer_distillation_loss(teacher, teacher, mask).item() == pytest.approx(0.0)
    # a student holding only teacher layer 1: layer 1 costs 0, layers 0 and 2 their distance to it
    student = (teacher[1],)
    expected = sum(((t - teacher[1]) ** 2).mean() for t in teacher)
    assert layer_distillation_loss(student, teacher, mask).item() == pytest.approx(expected.item(), rel=1e-5)
    # with hidden gates only the student's open dimensions count: a student that equals the teacher
    # there and is zero on the cut dimension costs nothing
    dims = torch.tensor([True, True, False, True])
    cut = tuple(t * dims for t in teacher)
    assert layer_distillation_loss(cut, teacher, mask, dims).item() == pytest.approx(0.0)
    assert layer_distillation_loss(cut, teacher, mask).item() > 0.01


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LearnedSettings(target_sparsity=1.0)


@pytest.mark.slow
def test_cofi_trains_gates_on_encoder_and_decoder_and_keeps_every_decoder_layer(dense):
    from pruning import expected_num_parameters

    settings = LearnedSettings(target_sparsity=0.5, max_steps=20, warmup_steps=5, batch_size=8,
                               gate_learning_rate=0.2, lambda_learning_rate=0.5, cofi=True)
    plan, pruned, summary = train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 1, 2, 3))
    assert plan.notes["method"] == "cofi" and plan.kept_decoder_layers == (0, 1, 2, 3)
    assert plan.narrows_decoder and not plan.encoder_is_dense
    assert plan.narrows_hidden  # CoFi's hidden-dimension gates cut some of the 32 dimensions
    assert len(summary["gates"]["heads"]) == 3  # encoder self-attention gate values per layer
    assert sum(p.numel() for p in pruned.parameters()) == expected_num_parameters(dense.model, plan)
    with torch.no_grad():
        ids = dense.tokenizer(["summarize: item 3 is here"], return_tensors="pt")
        from explorer.evaluation.latency import new_cache

        assert pruned.generate(**ids, max_new_tokens=3, past_key_values=new_cache()).shape[1] >= 2
    with pytest.raises(ValueError, match="CoFi keeps every decoder layer"):
        train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 3))


@pytest.mark.slow
def test_gates_that_start_above_a_small_target_have_not_reached_it_before_the_warm_up_ends(dense):
    # CoFi's gates start near sparsity 0.3-0.4: above a target of 0.1 from step 1, which is not the Lagrangian's doing
    settings = LearnedSettings(target_sparsity=0.1, max_steps=8, warmup_steps=4, batch_size=8, cofi=True)
    _, _, summary = train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 1, 2, 3))
    assert summary["sparsity_trace"][0][1] >= 0.1  # above the target at once
    assert summary["target_reached_step"] is not None and summary["target_reached_step"] > 4


@pytest.mark.slow
def test_gate_training_stopped_part_way_resumes_from_its_checkpoint_with_the_same_result(dense, tmp_path):
    settings = LearnedSettings(target_sparsity=0.5, max_steps=12, warmup_steps=4, batch_size=8,
                               gate_learning_rate=0.2, lambda_learning_rate=0.5, distill=True)
    whole_plan, _, whole = train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 3))

    class Stopped(Exception):
        pass

    def stop_at_step_8(fraction, message):
        if message.startswith("gate training: step 8/"):
            raise Stopped  # the machine goes away part-way

    with pytest.raises(Stopped):
        train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 3), progress=stop_at_step_8,
                    checkpoint_dir=tmp_path, save_steps=5)
    assert (tmp_path / "checkpoint-5" / "gate_trainer.json").is_file()
    seen = []
    plan, pruned, resumed = train_gates(dense, EXAMPLES, settings, task="samsum", kept_decoder_layers=(0, 3),
                                        progress=lambda f, m: seen.append(m), checkpoint_dir=tmp_path, save_steps=5)
    assert seen[0].startswith("gate training: step 6/12") and len(seen) == 7  # steps 6-12 only
    assert plan.kept_encoder_heads == whole_plan.kept_encoder_heads
    assert plan.kept_encoder_neurons == whole_plan.kept_encoder_neurons
    # the steps before the checkpoint come from its record; after it, the same run up to float rounding (an
    # uninterrupted run repeats bit for bit; a resumed one drifts by about 1e-4 a step at these learning rates)
    assert [step for step, _ in resumed["sparsity_trace"]] == [step for step, _ in whole["sparsity_trace"]]
    assert [v for _, v in resumed["sparsity_trace"]] == pytest.approx([v for _, v in whole["sparsity_trace"]], abs=1e-3)
    assert resumed["sparsity_trace"][:5] == whole["sparsity_trace"][:5]
    assert resumed["target_reached_step"] == whole["target_reached_step"]
    assert resumed["expected_sparsity"] == pytest.approx(whole["expected_sparsity"], abs=1e-3)
    for got, want in zip(resumed["gates"]["heads"], whole["gates"]["heads"]):
        assert got == pytest.approx(want, abs=5e-3)
