"""Backend of the explorer's tabs, without the UI; and the app builds."""

import pytest
from conftest import SHARED
from test_runs_pareto import fake_metrics, write_run

from explorer import service
from explorer.models import LoadedModel

T5_DIR = SHARED / "models" / "t5-small"


def test_prune_settings_validate_before_any_work():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        service.prune_settings("minilm2minilm", "rotten_tomatoes", 1.2, 2, "uniform", 0, "cpu", 8)
    with pytest.raises(ValueError, match="Did you mean"):
        service.prune_settings("minilm2minilm", "rotten_tomatos", 0.3, 2, "uniform", 0, "cpu", 8)
    settings = service.prune_settings(" minilm2minilm ", "rotten_tomatoes", 0.3, 2.0, "low", 5, "cpu", 8)
    assert settings.model == "minilm2minilm" and settings.decoder_layers == 2 and settings.recovery_steps == 5


def test_model_choices_list_offline_models_first_and_marked():
    assert service.model_choices()[0] == ("minilm2minilm (offline)", "minilm2minilm")


def test_stream_generation_yields_growing_text_and_rejects_empty_text():
    if not T5_DIR.exists():
        pytest.skip("../shared/models is not beside the project")
    from transformers import AutoTokenizer
    from tiny import tiny_t5

    tokenizer = AutoTokenizer.from_pretrained(T5_DIR)
    model = tiny_t5()
    model.resize_token_embeddings(len(tokenizer))
    loaded = LoadedModel(model, tokenizer, "tiny", "t5", "test")
    with pytest.raises(ValueError, match="Enter some text"):
        list(service.stream_generation(loaded, "   "))
    steps = list(service.stream_generation(loaded, "summarize: hello there", max_new_tokens=5))
    assert steps and [s[2] for s in steps] == sorted(s[2] for s in steps) and all(s[1] > 0 for s in steps)


def test_compare_sources_put_the_dense_model_first(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        service.compare_sources([], tmp_path)
    metrics = dict(fake_metrics(30, 40), dense_finetune={"path": "/cache/dense"})
    write_run(tmp_path, "r1", metrics)
    sources = service.compare_sources(["r1"], tmp_path)
    assert sources[0][1] == "/cache/dense" and sources[1][1] == str(tmp_path / "r1")
    assert "30% of encoder head and FFN parameters removed" in sources[1][0]


def test_pareto_view_filters_by_task(tmp_path):
    write_run(tmp_path, "r1", fake_metrics(30, 40))
    fig, table = service.pareto_view("samsum", "gmacs", root=tmp_path)
    assert fig is not None and set(table["task"]) == {"samsum"}
    fig, table = service.pareto_view("sst2", root=tmp_path)
    assert fig is None and table.empty


def test_app_builds():
    from explorer.ui import build_app

    assert build_app(runs=None) is not None


def test_local_data_is_used_only_where_the_shared_folder_has_the_task():
    data = SHARED / "data"
    if not data.exists():
        pytest.skip("../shared/data is not beside the project")
    assert service.data_dir_for("samsum", str(data)) == str(data)
    assert service.data_dir_for("rotten_tomatoes", str(data)) is None
    assert service.data_dir_for("samsum", None) is None
