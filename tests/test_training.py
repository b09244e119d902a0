"""The one training path (pruning.training) and the regression head of the EFTNAS pipeline."""

import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED

from pruning import training


def test_training_arguments_group_by_length_and_checkpoint_only_when_asked(tmp_path):
    args = training.training_arguments(tmp_path, max_steps=10, batch_size=4, learning_rate=1e-4, warmup_ratio=0.2)
    assert args.train_sampling_strategy == "group_by_length" and args.length_column_name == "length"
    assert args.save_strategy == "no" and args.warmup_steps == 2 and not args.bf16
    args = training.training_arguments(tmp_path, max_steps=10, batch_size=4, learning_rate=1e-4, save_steps=3,
                                       group_by_length=False, seq2seq=True)
    assert args.save_strategy == "steps" and args.save_steps == 3 and args.train_sampling_strategy == "random"
    with pytest.raises(ValueError, match="max_steps"):
        training.training_arguments(tmp_path, max_steps=0, batch_size=4, learning_rate=1e-4)


def test_last_checkpoint_takes_the_newest_complete_one(tmp_path):
    assert training.last_checkpoint(tmp_path / "none") is None
    for step, complete in ((2, True), (10, True), (12, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert training.last_checkpoint(tmp_path).endswith("checkpoint-10")


def test_tokenized_dataset_is_cached_by_its_key_and_has_lengths(tmp_path):
    calls = []

    def tokenize(batch):
        calls.append(len(batch["text"]))
        return {"input_ids": [[1] * len(t) for t in batch["text"]]}

    records = [{"text": "ab"}, {"text": "abcd"}]
    key = training.fingerprint(records, "toy")
    first = training.tokenized_dataset(records, tokenize, key=key, cache_dir=tmp_path)
    assert first["length"] == [2, 4] and calls == [2]
    again = training.tokenized_dataset(records, tokenize, key=key, cache_dir=tmp_path)
    assert again["length"] == [2, 4] and calls == [2]  # read from the cache, not tokenized again
    assert training.fingerprint(records, "toy") != training.fingerprint(records, "other tokenizer")
    assert training.as_dataset([{"input_ids": [1, 2, 3]}])["length"] == [3]
    with pytest.raises(ValueError, match="No examples"):
        training.tokenized_dataset([], tokenize, key="x")


def test_the_one_distillation_loss_for_classes_and_for_a_regression_head():
    torch.manual_seed(0)
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    kd = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    torch.testing.assert_close(training.kd_loss(s, t, 2.0), kd)
    torch.testing.assert_close(training.distillation_loss(s, t, y, ce_weight=0.1, temperature=2.0),
                               0.1 * F.cross_entropy(s, y) + 0.9 * kd)
    s1, t1, y1 = torch.randn(5, 1), torch.randn(5, 1), torch.rand(5) * 5
    torch.testing.assert_close(training.distillation_loss(s1, t1, y1, ce_weight=0.25),
                               0.25 * F.mse_loss(s1[:, 0], y1) + 0.75 * F.mse_loss(s1, t1))
    assert training.kd_loss(s, s.clone()).abs() < 1e-6


def test_progress_callback_reports_steps_loss_and_eta():
    seen = []
    callback = training.progress_callback(lambda f, m: seen.append((f, m)), "toy", lambda: "extra")

    class State:
        global_step, max_steps = 0, 4

    state = State()
    callback.on_train_begin(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 1.5})
    state.global_step = 2
    callback.on_step_end(None, state, None)
    fraction, message = seen[-1]
    assert fraction == 0.5 and message.startswith("toy: step 2/4, loss 1.500, extra, ETA ")


def test_stsb_trains_a_regression_head_and_reports_correlations():
    from explorer.models.classifier import load_classifier
    from explorer.evaluation.classify import score, tokenize
    from explorer.training.classifier import training_dataset
    from explorer.data.splits import load_split

    model, tokenizer, _ = load_classifier(f"random:{SHARED / 'models' / 'bert-mini'}", 1)
    assert model.config.problem_type == "regression" and model.classifier.out_features == 1
    examples = load_split("stsb", "validation", SHARED / "data", limit=16)
    rows = tokenize(tokenizer, examples, 32, regression=True)
    assert isinstance(rows[0]["labels"], float) and 0.0 <= rows[0]["labels"] <= 5.0
    data = training_dataset(tokenizer, examples, 32, regression=True)
    assert len(data) == 16 and data["length"] == [len(r["input_ids"]) for r in rows]
    metrics = score("stsb", model, tokenizer, rows)
    assert set(metrics) == {"pearson", "spearman"} and all(-100 <= v <= 100 for v in metrics.values())


@pytest.mark.slow
def test_the_dense_fine_tune_keeps_the_best_epoch_on_held_out_examples(tmp_path):
    """keep_best: the weights at the best point of the held-out curve are kept (early stopping),
    also when the run is resumed from a checkpoint in between."""
    from explorer.training.classifier import finetune_classifier, training_dataset
    from explorer.models.classifier import load_classifier
    from explorer.data.splits import load_split

    model, tokenizer, _ = load_classifier(f"random:{SHARED / 'models' / 'bert-mini'}", 2)
    data = training_dataset(tokenizer, load_split("sst2", "train", SHARED / "data", limit=32), 32)
    values, snapshots = iter([1.0, 5.0, 2.0, 0.0]), []

    def curve():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(values)

    summary = finetune_classifier(model, tokenizer, data, max_steps=8, batch_size=8, curve=curve, curve_every=2,
                                  keep_best=True, checkpoint_dir=tmp_path / "ckpt", save_steps=4)
    assert [p[0] for p in summary["curve"]] == [2, 4, 6, 8] and summary["kept_step"] == 4
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][name], msg=name)
    assert (tmp_path / "ckpt" / "best.safetensors").is_file()


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    from explorer.evaluation.metrics import accuracy, paired_bootstrap

    rng = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=rng).tolist()
    a = [t if i % 10 else 1 - t for i, t in enumerate(y)]  # 90% right
    b = [t if i % 2 else 1 - t for i, t in enumerate(y)]  # 50% right
    worse = paired_bootstrap(accuracy, y, a, b, resamples=300)
    assert worse["diff"] == pytest.approx(-40.0) and worse["high"] < 0 and worse["n"] == 400
    swapped = [1 - t if i in (0, 10, 1, 2) else t for i, t in enumerate(a)]  # two fixed, two broken
    same = paired_bootstrap(accuracy, y, a, swapped, resamples=300)
    assert same["diff"] == 0.0 and same["low"] < 0 < same["high"]


def test_training_without_a_checkpoint_folder_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """Trainer runs without ``checkpoint_dir`` work in a temporary folder, removed afterwards (a
    user's /tmp must not fill with empty ``explorer-*`` folders)."""
    import tempfile

    from explorer.training.classifier import finetune_classifier, training_dataset
    from explorer.models.classifier import load_classifier
    from explorer.data.splits import load_split

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model, tokenizer, _ = load_classifier(f"random:{SHARED / 'models' / 'bert-mini'}", 2)
    data = training_dataset(tokenizer, load_split("sst2", "train", SHARED / "data", limit=8), 16)
    finetune_classifier(model, tokenizer, data, max_steps=2, batch_size=4)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("explorer-")] == []  # (torch keeps its own caches)
