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
