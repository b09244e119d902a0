"""Decoder-only LMs in the explorer's backend (issue 18): a pruned LM run made through the Prune tab's call (in a
child process) appears on the Pareto front of ``lm-samsum`` by perplexity or by a task score, and the Compare tab
streams its chat reply beside the dense model's. Tiny random Llama: plumbing only, never quality."""

import pytest
from conftest import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "SAMSum").exists(),
                                reason="../shared/data is not beside the project")


@pytest.fixture(scope="module")
def lm_run(tiny_lm, tmp_path_factory):
    """(runs folder, run id) of one pruned tiny-LM run, made by the Prune tab's backend call."""
    from explorer.backend import prune
    from explorer.pipelines.lm_prune import LMPruneSettings

    root = tmp_path_factory.mktemp("runs")
    settings = LMPruneSettings(model=tiny_lm, layers=2, selection="block-influence", width_sparsity=0.5,
                               data_dir=str(SHARED / "data"), calibration_texts=4, eval_texts=6, max_tokens=48,
                               batch_size=4, input_tokens=16, new_tokens=4, repeats=1, zero_shot_examples=8,
                               summaries=3)
    messages = []
    run = prune.start_lm_prune(settings, str(root), progress=lambda f, m: messages.append(m))
    assert "healing" not in " ".join(messages) and any("perplexity" in m for m in messages)
    return str(root), run.run_id


def test_an_lm_run_is_on_the_pareto_front_by_perplexity_or_by_a_task_score(lm_run):
    from explorer.backend import pareto

    root, run_id = lm_run
    fig, table, _ = pareto.pareto_view("lm-samsum", "decode_ms_per_token", root=root, references=False)
    assert fig is not None and set(table["kind"]) == {"measured", "dense"}
    pruned = table[table["kind"] == "measured"].iloc[0]
    assert pruned["run_id"] == run_id and pruned["metric"] == "perplexity" and not pruned["higher_is_better"]
    assert pruned["decoder_layers"] == "2" and "perplexity" in pruned["interval"]
    fig, table, _ = pareto.pareto_view("lm-samsum", "params_m", root=root, references=False,
                                       metric="zero_shot_accuracy")
    assert set(table["metric"]) == {"zero_shot_accuracy"} and table["higher_is_better"].all()
    assert "zero_shot_accuracy" in table[table["kind"] == "measured"].iloc[0]["interval"]
    fig, table, note = pareto.pareto_view("rotten_tomatoes", root=root, references=False)
    assert fig is None and "No runs on rotten_tomatoes" in note  # LM runs stay on their own task
    _, caption = pareto.plan_view(run_id, root)
    assert "decoder 4 -> 2 layers" in caption


def test_compare_streams_the_dense_and_the_pruned_lm_reply(lm_run, tiny_lm):
    from explorer.backend import common, compare

    root, run_id = lm_run
    sources = compare.compare_sources([run_id], root)
    assert [spec for _, spec in sources][0] == tiny_lm and sources[1][0].startswith(tiny_lm)
    for _, spec in sources:
        loaded = common.MODELS.get(spec)
        steps = list(compare.stream_generation(loaded, "Summarize: A: lunch at one? B: sure", max_new_tokens=5))
        assert 1 <= len(steps) <= 5 and [t for _, _, t in steps] == list(range(1, len(steps) + 1))
    assert common.MODELS.get(sources[1][1]).pruned
    assert len(common.MODELS.get(sources[1][1]).model.model.layers) == 2


def test_lm_runs_and_nash_runs_are_not_compared_together(lm_run, tmp_path):
    import json
    import shutil
    from pathlib import Path

    from explorer.backend import compare

    root, run_id = lm_run
    nash = tmp_path / "20260101-000000__t5__samsum__nash"
    nash.mkdir()
    (nash / "metrics.json").write_text(json.dumps({"model": "t5-small", "task": "samsum", "plan_summary": "x",
                                                   "encoder_sparsity_achieved": 0.1}))
    (nash / "plan.json").write_text("{}")
    shutil.copytree(nash, Path(root) / nash.name)
    try:
        with pytest.raises(ValueError, match="Compare decoder-only LM runs with each other"):
            compare.compare_sources([run_id, nash.name], root)
    finally:
        shutil.rmtree(Path(root) / nash.name)


@pytest.mark.parametrize("change, message", [
    (dict(model="gpt-17"), "Choose a decoder-only LM: smollm2-135m, gemma3-270m"),
    (dict(data_dir=None), "reads SAMSum from a local data folder"),
    (dict(width=1.0), r"Width sparsity must be in \[0, 1\)"),
    (dict(layers=None), "Fill in every number"),
    (dict(selection="random"), "Unknown selection"),
])
def test_the_prune_tab_lm_settings_say_what_to_change(change, message):
    from explorer.backend import prune

    values = dict(model="smollm2-135m", layers=20, selection="block-influence", width=0.0, heal_steps=0,
                  heal="lora", eval_texts=10, zero_shot=10, summaries=2, device="cpu",
                  data_dir=str(SHARED / "data"))
    values.update(change)
    data_dir = values.pop("data_dir")
    with pytest.raises(ValueError, match=message):
        prune.lm_prune_settings(*values.values(), data_dir=data_dir)
