"""scripts/nash_retime.py and scripts/cofi_match.py as a restarted nash_tables.sh job calls them: a task
whose runs were all re-timed together, and a CoFi search that has finished, are left as they are (no
timing, no new numbers). The metrics.json files below are test inputs, not results."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stamp(date: str, together: int) -> dict:
    return {"date": date, "rounds": 20, "runs_timed_together": together, "ratios": {}}


def test_a_task_is_re_timed_again_only_when_a_run_was_added_or_missed():
    retime = _script("nash_retime")
    same = {"a": {"retimed": _stamp("2026-12-01T10:00:00", 2)}, "b": {"retimed": _stamp("2026-12-01T10:00:00", 2)}}
    assert retime.already_retimed(same)
    added = {**same, "c": {}}  # a run finished after the re-timing (rotten_tomatoes' control)
    assert not retime.already_retimed(added)
    added["c"] = {"retimed": _stamp("2026-12-01T10:00:00", 2)}  # copied stamp, but 3 runs now
    assert not retime.already_retimed(added)
    apart = {"a": same["a"], "b": {"retimed": _stamp("2026-12-02T09:00:00", 2)}}  # two timings
    assert not retime.already_retimed(apart)


def test_a_finished_cofi_search_is_not_timed_again(tmp_path, monkeypatch, capsys):
    cofi_match = _script("cofi_match")
    from dataclasses import asdict

    from explorer.pipelines.nash_settings import PruneSettings

    nash = tmp_path / "learned-k3-s0.3"
    nash.mkdir()
    settings = asdict(PruneSettings(model="minilm2minilm", task="stsb", encoder_sparsity=0.3, decoder_layers=3))
    (nash / "metrics.json").write_text(json.dumps({"settings": settings, "dense_finetune": {"path": "nowhere"}}))
    record = {"nash_run": str(nash), "curve": [[0.3, 1.2]], "matched": str(tmp_path / "cofi-s0.39"), "why": None,
              "tries": [{"sparsity": 0.39, "run": str(tmp_path / "cofi-s0.39"), "speedup": 1.33, "nash_speedup": 1.35}]}
    (tmp_path / "cofi-match-learned-k3-s0.3.json").write_text(json.dumps(record))

    def no_timing(*args, **kwargs):
        raise AssertionError("a finished search loaded models to time them again")

    monkeypatch.setattr(cofi_match, "dense_for_timing", no_timing)
    monkeypatch.setattr(sys, "argv", ["cofi_match.py", str(nash), "--out", str(tmp_path)])
    cofi_match.main()
    assert json.loads(capsys.readouterr().out)["matched"] == record["matched"]
    assert json.loads((tmp_path / "cofi-match-learned-k3-s0.3.json").read_text()) == record
    monkeypatch.setattr(sys, "argv", ["cofi_match.py", str(nash), "--out", str(tmp_path), "--again"])
    with pytest.raises(AssertionError, match="time it again|loaded models"):
        cofi_match.main()


def _searching(tmp_path, monkeypatch, cofi_match, speedups):
    """A CoFi search with its surrogate curve recorded and every model load, training and timing replaced:
    each try trains a run folder and is judged at the next of ``speedups`` (CoFi's, NASH 1.40x)."""
    from dataclasses import asdict

    from explorer.pipelines.nash_settings import PruneSettings

    nash = tmp_path / "learned-k3-s0.3"
    nash.mkdir()
    settings = asdict(PruneSettings(model="minilm2minilm", task="samsum", encoder_sparsity=0.3, decoder_layers=3))
    (nash / "metrics.json").write_text(json.dumps({"settings": settings, "speedup_end_to_end": 1.4}))
    (tmp_path / "cofi-match-learned-k3-s0.3.json").write_text(json.dumps(
        {"nash_run": str(nash), "curve": [[0.3, 1.1], [0.6, 1.4], [0.95, 1.7]], "tries": []}))
    monkeypatch.setattr(cofi_match, "dense_for_timing", lambda metrics: (None, None))
    monkeypatch.setattr(cofi_match, "pretrained", lambda model: None)
    monkeypatch.setattr(cofi_match, "timing_model", lambda run_dir, base: (None, None))
    trained = []

    def train(settings, run_dir, **kwargs):
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text("{}")
        trained.append(run_dir.name)

    def judge(dense, nash_model, cofi_dir, *args):
        return {"sparsity": float(cofi_dir.name.removeprefix("cofi-s")), "run": str(cofi_dir),
                "speedup": speedups[len(trained) - 1], "nash_speedup": 1.4}

    monkeypatch.setattr(cofi_match, "run_prune", train)
    monkeypatch.setattr(cofi_match, "judge", judge)
    return nash, trained


def test_a_cofi_search_ships_each_try_as_it_is_recorded(tmp_path, monkeypatch, capsys):
    """A machine lost in the middle of a search (a try is a CPU hour) must not lose its finished tries:
    nash_tables.sh passes --after-try its ship command, run once the try is in the record."""
    cofi_match = _script("cofi_match")
    nash, trained = _searching(tmp_path, monkeypatch, cofi_match, speedups=[1.2, 1.39])
    record = tmp_path / "cofi-match-learned-k3-s0.3.json"
    hook = f"cp {record} {tmp_path}/shipped-$(ls {tmp_path} | grep -c shipped).json"
    monkeypatch.setattr(sys, "argv", ["cofi_match.py", str(nash), "--out", str(tmp_path), "--after-try", hook])
    cofi_match.main()
    assert len(trained) == 2  # 1.2x is not within 5% of 1.40x; the second try is
    shipped = [json.loads((tmp_path / f"shipped-{i}.json").read_text()) for i in range(2)]
    assert [len(s["tries"]) for s in shipped] == [1, 2]  # each ship saw its own try recorded
    assert "matched" not in shipped[0]  # the first ship is of a search under way
    assert json.loads(record.read_text())["matched"] == str(tmp_path / trained[1])


def test_a_failed_ship_stops_the_search_with_its_record_kept(tmp_path, monkeypatch):
    """Staging refuses runs of another dense fine-tune (SHIP=redo): every further try would be wasted."""
    cofi_match = _script("cofi_match")
    nash, trained = _searching(tmp_path, monkeypatch, cofi_match, speedups=[1.2, 1.39])
    monkeypatch.setattr(sys, "argv", ["cofi_match.py", str(nash), "--out", str(tmp_path), "--after-try", "exit 3"])
    with pytest.raises(SystemExit) as stopped:
        cofi_match.main()
    assert stopped.value.code == 3 and len(trained) == 1
    record = json.loads((tmp_path / "cofi-match-learned-k3-s0.3.json").read_text())
    assert len(record["tries"]) == 1 and "matched" not in record
