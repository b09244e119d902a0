"""The bad-input battery of the command line (the UI's is in ``test_app.py``): each case is one
mistake a user makes (a damaged model folder, a tampered plan, a number out of range, a data file
that is empty, not UTF-8, binary or mislabelled, an output folder in use). Each must end with exit
status 2 and one line ``error: ...`` that names the problem and says what to change; no traceback,
no output folder, and nothing already saved changed.

The cases fail before any long work (validation and loading come first), so the battery takes
seconds. argparse's own errors (a word where a number goes) are argparse's two lines: usage, then
the error.
"""

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED, T5_TOKENIZER

from explorer.cli.main import main

SAMSUM = SHARED / "data" / "SAMSum"
pytestmark = [pytest.mark.slow,  # about 40 s: builds damaged model folders, loads a tiny model many times
              pytest.mark.skipif(not SAMSUM.is_dir() or not T5_TOKENIZER.is_dir(),
                                 reason="../shared/data and ../shared/models are not beside the project")]
FAST = ["--finetune-steps", "1", "--eval-samples", "2", "--calibration-samples", "2", "--repeats", "1",
        "--input-tokens", "8", "--new-tokens", "2", "--batch-size", "2"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Folders the cases point at: a tiny T5, damaged copies of it, a pruned copy with tampered plans,
    and data folders with bad files. Returns ``{name: path}``."""
    from tiny import save_tiny_t5
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    from pruning import apply_plan, keep_all_plan, save_pruned
    from explorer.models.loading import load_model

    base = tmp_path_factory.mktemp("bench")
    paths = {"tiny": save_tiny_t5(base / "tiny", T5_TOKENIZER)}

    def variant(name, change):
        folder = base / name
        shutil.copytree(paths["tiny"], folder)
        change(folder)
        paths[name] = folder

    weights = (paths["tiny"] / "model.safetensors").read_bytes()
    variant("truncated", lambda d: (d / "model.safetensors").write_bytes(weights[:1000]))
    variant("garbage", lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64))
    variant("no-config", lambda d: (d / "config.json").unlink())
    variant("config-not-json", lambda d: (d / "config.json").write_text("{not json"))
    variant("no-weights", lambda d: (d / "model.safetensors").unlink())
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(base / "gpt2")
    paths["gpt2"] = base / "gpt2"
    BertModel(BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(base / "bert")
    paths["bert"] = base / "bert"
    loaded = load_model(str(paths["tiny"]))
    plan = keep_all_plan(loaded.model)
    save_pruned(apply_plan(loaded.model, plan), plan, base / "pruned", tokenizer=loaded.tokenizer)
    paths["pruned"] = base / "pruned"
    good_plan = json.loads((base / "pruned" / "plan.json").read_text())
    for name, edit in {"plan-out-of-range": lambda p: p["kept_encoder_heads"][0].append(99),
                       "plan-wrong-family": lambda p: p.update(family="bart", num_heads=99),
                       "plan-future-version": lambda p: p.update(format_version=99)}.items():
        shutil.copytree(base / "pruned", base / name)
        tampered = json.loads(json.dumps(good_plan))
        edit(tampered)
        (base / name / "plan.json").write_text(json.dumps(tampered))
        paths[name] = base / name
    shutil.copytree(base / "pruned", base / "plan-not-json")
    (base / "plan-not-json" / "plan.json").write_text("{")
    paths["plan-not-json"] = base / "plan-not-json"

    def data(name, content: bytes | str, file="train.json"):
        folder = base / "data" / name
        folder.mkdir(parents=True)
        shutil.copy(SAMSUM / "test.json", folder / "test.json")
        (folder / file).write_bytes(content if isinstance(content, bytes) else content.encode())
        paths[f"data-{name}"] = folder

    rows = lambda dialogue, summary: json.dumps([{"id": str(i), "dialogue": dialogue, "summary": summary}
                                                 for i in range(4)])
    data("empty-file", "")
    data("no-train-file", "[]", file="val.json")
    data("malformed", '[{"id": "1", "dialogue": "A: hi"')
    data("non-utf8", b'[{"id": "1", "dialogue": "caf\xe9", "summary": "x"}]')
    data("binary", bytes(range(256)) * 4)
    data("empty-text", rows("", ""))
    data("whitespace-text", rows("   ", " \n\t"))
    data("wrong-fields", json.dumps([{"id": "1", "text": "A: hi", "label": 1}]))
    sst2 = base / "data" / "sst2-labels"
    sst2.mkdir()
    (sst2 / "dev.tsv").write_text("sentence\tlabel\na fine film\t7\na dull film\t0\n")
    paths["data-sst2-labels"] = sst2
    paths["metrics-not-json"] = base / "metrics-not-json"
    shutil.copytree(base / "pruned", paths["metrics-not-json"])
    (paths["metrics-not-json"] / "metrics.json").write_text("{")
    (base / "a-file").write_text("not a folder")
    paths["a-file"] = base / "a-file"
    return paths


def prune(model="tiny", task="samsum", data=None, sparsity="0.3", layers="2", extra=()):
    """argv of a prune; names in ``{...}`` are filled from the bench."""
    return ["prune", "--model", f"{{{model}}}" if not model.startswith(("no-such", "./", "random:")) else model,
            "--task", task, "--data-dir", f"{{{data}}}" if data else str(SAMSUM), "--encoder-sparsity", sparsity,
            "--decoder-layers", layers, *FAST, *extra, "--out", "{out}"]


def evaluate(model="tiny", data=None, task="samsum", extra=()):
    return ["evaluate", "--model", f"{{{model}}}", "--task", task, "--data-dir", f"{{{data}}}" if data else str(SAMSUM),
            "--eval-samples", "2", *extra]


# (argv, what the one line must say)
CASES = {
    # the model
    "unknown-model": (prune(model="no-such-model-xyz"), "not reachable"),
    "not-a-folder": (prune(model="./no/such/folder"), "is not a folder"),
    "folder-without-config": (prune(model="no-config"), "no config.json"),
    "config-not-json": (prune(model="config-not-json"), "could not be loaded"),
    "truncated-safetensors": (prune(model="truncated"), "could not be loaded"),
    "garbage-safetensors": (prune(model="garbage"), "could not be loaded"),
    "config-without-weights": (prune(model="no-weights"), "no weights"),
    "decoder-only-model": (prune(model="gpt2"), "decoder-only"),
    "encoder-only-model": (prune(model="bert"), "encoder-only"),
    "measure-truncated": (["measure", "--model", "{truncated}", "--repeats", "1"], "could not be loaded"),
    # a tampered plan.json in a pruned folder
    "plan-index-out-of-range": (evaluate(model="plan-out-of-range"), "outside [0, 4)"),
    "plan-wrong-family": (evaluate(model="plan-wrong-family"), "made for a bart model but this is a t5 model"),
    "plan-future-version": (evaluate(model="plan-future-version"), "Unsupported plan format version 99"),
    "plan-not-json": (evaluate(model="plan-not-json"), "not valid JSON"),
    # numbers out of range
    "sparsity-1": (prune(sparsity="1.0"), "[0, 1)"),
    "sparsity-negative": (prune(sparsity="-0.1"), "[0, 1)"),
    "sparsity-nan": (prune(sparsity="nan"), "[0, 1)"),
    "sparsity-a-word": (prune(sparsity="abc"), "invalid float value"),
    "decoder-layers-0": (prune(layers="0"), "at least 1"),
    "decoder-layers-too-many": (prune(layers="5"), "has 4 decoder layers; cannot keep 5"),
    "decoder-layers-a-word": (prune(layers="two"), "invalid int value"),
    "batch-size-0": (prune(extra=["--batch-size", "0"]), "batch_size >= 1"),
    "learning-rate-negative": (prune(extra=["--learning-rate", "-1"]), "positive learning rate"),
    "eval-samples-negative": (prune(extra=["--eval-samples", "-3"]), "eval_samples"),
    "recovery-steps-negative": (prune(extra=["--recovery-steps", "-1"]), "recovery_steps >= 0"),
    "finetune-steps-0": (prune(extra=["--finetune-steps", "0"]), "max_steps >= 1"),
    "calibration-samples-0": (prune(extra=["--calibration-samples", "0"]), "calibration_samples"),
    "gate-steps-negative": (prune(extra=["--method", "nash-learned", "--gate-steps", "-5"]), "gate_steps >= 1"),
    "save-steps-0": (prune(extra=["--save-steps", "0"]), "save_steps must be at least 1"),
    "timing-repeats-0": (prune(extra=["--repeats", "0"]), "repeats must be a positive integer"),
    "timing-input-tokens-0": (prune(extra=["--input-tokens", "0"]), "input tokens must be a positive integer"),
    "timing-new-tokens-0": (prune(extra=["--new-tokens", "0"]), "new tokens must be a positive integer"),
    # settings that contradict each other
    "decoder-only-with-sparsity": (prune(extra=["--method", "decoder-only"]), "keeps the whole encoder"),
    "learned-layers-without-gates": (prune(extra=["--layer-selection", "learned"]), "nash-learned"),
    "cofi-with-fewer-layers": (prune(extra=["--method", "cofi"]), "CoFi keeps every decoder layer"),
    # the task and its data
    "unknown-task": (prune(task="samsung"), "Did you mean 'samsum'"),
    "data-folder-missing": (prune(data="a-file-missing"), "does not exist"),
    "data-dir-is-one-file": (prune(data="a-file"), "is one file"),
    "empty-data-file": (prune(data="data-empty-file"), "the file is empty"),
    "missing-train-split": (prune(data="data-no-train-file"), "train"),
    "malformed-json": (prune(data="data-malformed"), "train.json"),
    "not-utf8": (prune(data="data-non-utf8"), "line 1 is not UTF-8"),
    "binary-file": (prune(data="data-binary"), "a binary file"),
    "empty-text-fields": (prune(data="data-empty-text"), "no usable rows"),
    "whitespace-text-fields": (prune(data="data-whitespace-text"), "no usable rows"),
    "wrong-fields": (prune(data="data-wrong-fields"), "has no 'dialogue' field"),
    "label-outside-the-task": (evaluate(task="sst2", data="data-sst2-labels"), "has label '7'"),
    "evaluate-empty-text": (evaluate(data="data-empty-text", extra=["--split", "train"]), "no usable rows"),
    "evaluate-not-utf8": (evaluate(data="data-non-utf8", extra=["--split", "train"]), "not UTF-8"),
    "evaluate-unknown-split": (evaluate(extra=["--split", "banana"]), "banana"),
    # outputs
    "out-is-under-a-file": (prune()[:-1] + ["{a-file}/run"], "Cannot write the run folder"),
    "report-without-metrics": (["report", "{tiny}"], "no metrics.json"),
    "report-metrics-not-json": (["report", "{metrics-not-json}"], "is not a metrics.json"),
    # EFTNAS
    "eftnas-summarization-task": (["eftnas", "--task", "samsum", "--data-dir", str(SHARED / "data"), "--out", "{out}"],
                                  "classification and regression"),
    "eftnas-encoder-decoder-model": (["eftnas", "--model", "{tiny}", "--out", "{out}"], "BERT-style encoders"),
    "eftnas-population-1": (["eftnas", "--population", "1", "--out", "{out}"], "population must be at least 2"),
    "eftnas-stages-0": (["eftnas", "--stages", "0", "--out", "{out}"], "stages must be at least 1"),
    "eftnas-settings-file-missing": (["eftnas", "--settings-json", "{a-file}.json", "--out", "{out}"],
                                     "No such file"),
    "eftnas-settings-unknown-key": (["eftnas", "--settings-json", "{a-file}", "--out", "{out}"],
                                    "Malformed EFTNAS settings"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_clear_line_and_exit_status_2(case, bench, tmp_path, capsys, isolated_cache):
    argv, expected = CASES[case]
    if case == "eftnas-settings-unknown-key":
        bench["a-file"].write_text(json.dumps({"model": "minilm", "no_such_setting": 1}))
    paths = {**{k: str(v) for k, v in bench.items()}, "out": str(tmp_path / "out"),
             "a-file-missing": str(tmp_path / "nowhere")}
    argv = [a.format(**paths) if "{" in a else a for a in argv]
    before = {p: p.stat().st_mtime_ns for p in Path(bench["tiny"]).parent.rglob("*") if p.is_file()}
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: usage, then its error line
        code = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("[")]
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert lines and lines[-1].split(": ")[0] in ("error", "python -m explorer prune"), lines
    if not expected.startswith("invalid"):
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[-1], lines[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()
    if case == "eftnas-settings-unknown-key":
        bench["a-file"].write_text("not a folder")
    after = {p: p.stat().st_mtime_ns for p in Path(bench["tiny"]).parent.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p in before and p.name != "a-file"} == \
        {p: t for p, t in before.items() if p.name != "a-file"}  # nothing already saved changed


def test_a_second_run_on_the_same_output_folder_is_refused_while_the_first_writes(bench, tmp_path, capsys):
    """Two prunes with one --out at once: the second stops at once; the first's work folder is untouched."""
    from explorer.runs.stages import RunFolder

    out = tmp_path / "out"
    first = RunFolder(out, {"run": 1})  # the first run holds the folder's lock while it works
    (first.path / "half-written").write_text("the first run's file")
    argv = [a.format(tiny=bench["tiny"], out=out) for a in prune()]
    assert main(argv) == 2
    assert "Another run is writing" in capsys.readouterr().err
    assert (first.path / "half-written").read_text() == "the first run's file"
    first.release()
    assert RunFolder(out, {"run": 1}, resume=True).state["settings"] == {"run": 1}  # free again


def test_an_existing_output_folder_is_kept_without_overwrite(bench, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    argv = [a.format(tiny=bench["tiny"], out=out) for a in prune()]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


def test_the_battery_has_at_least_forty_cases():
    assert len(CASES) + 2 >= 40
