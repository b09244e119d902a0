import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NNCF_TORCH_LEGACY_TRACING", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared"
T5_TOKENIZER = SHARED / "models" / "t5-small"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh project cache (fine-tunes, tokenized data) per test: ``EXPLORER_CACHE`` under tmp_path."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    """A tiny T5 (random weights) with the real t5-small tokenizer, as a save_pretrained folder."""
    from tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), T5_TOKENIZER)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 4-layer Llama with T5's real tokenizer (vocab 32,128), saved as a local folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(T5_TOKENIZER)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# Tests that import NNCF run in a child process ------------------------------------------------
#
# NNCF patches torch for the whole process once imported (it wraps torch.nn.functional and torch
# functions; nas.supernet and nas.movement also set NNCF_TORCH_LEGACY_TRACING and CI). A test marked
# ``isolated`` therefore runs in its own ``python -m pytest <node id>``; the child sends its test
# reports (setup, call, teardown) back through a file, and the parent logs them as its own, so a
# failure, an error or a skip in the child is one here, with the child's traceback. A child that
# ends without reporting a whole test (a crash, a node id it did not find) or with an exit status
# that its reports do not explain fails the test.
# The fixture ``_nncf_stays_in_child_processes`` fails any test that imports NNCF in this process.

CHILD_REPORTS = "EXPLORER_TEST_CHILD_REPORTS"  # set in a child: the file its reports go to
IN_CHILD = bool(os.environ.get(CHILD_REPORTS))


def pytest_configure(config):
    if IN_CHILD:
        config.pluginmanager.register(_ChildReports(config, Path(os.environ[CHILD_REPORTS])), "explorer-child-reports")


class _ChildReports:
    """In a child: every test report, serialized as pytest-xdist does, one JSON line each."""

    def __init__(self, config, path):
        self.config, self.path = config, path

    def pytest_runtest_logreport(self, report):
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        with self.path.open("a") as f:
            f.write(json.dumps(data) + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if IN_CHILD or item.get_closest_marker("isolated") is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _run_in_child(item):
        item.ihook.pytest_runtest_logreport(report=report)
    # The child set up and tore down the test and its fixtures. Here, tear down the fixtures that this
    # process set up for earlier tests and the next test does not share, as pytest's teardown step does.
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    call = pytest.CallInfo.from_call(lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown")
    if call.excinfo is not None:
        item.ihook.pytest_runtest_logreport(report=pytest.TestReport.from_item_and_call(item, call))
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _run_in_child(item) -> list:
    """``python -m pytest <node id>`` in a child process; its reports for the test, or a failure."""
    config = item.config
    with tempfile.TemporaryDirectory(prefix="pytest-child-") as folder:
        reports_file = Path(folder) / "reports.jsonl"
        command = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-p", "no:cacheprovider",
                   f"--rootdir={config.rootpath}", f"--basetemp={Path(folder) / 'tmp'}",
                   f"--tb={config.option.tbstyle}"]
        if config.inipath is not None:
            command.append(f"--config-file={config.inipath}")
        child = subprocess.run(command, cwd=config.rootpath, env=dict(os.environ, **{CHILD_REPORTS: str(reports_file)}),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = reports_file.read_text().splitlines() if reports_file.exists() else []
    reports = [config.hook.pytest_report_from_serializable(config=config, data=json.loads(line)) for line in lines]
    reports = [r for r in reports if r.nodeid == item.nodeid]
    for r in reports:  # JSON made a skip's (path, line, reason) a list; the terminal summary wants a tuple
        if isinstance(r.longrepr, list):
            r.longrepr = tuple(r.longrepr)
    whole = [r.when for r in reports][:1] == ["setup"] and [r.when for r in reports][-1:] == ["teardown"]
    if whole and (child.returncode == 0) != any(r.failed for r in reports):
        return reports
    keywords = {name: 1 for name in item.keywords}
    got = ", ".join(f"{r.when} {r.outcome}" for r in reports) or "nothing"
    message = (f"The child process for this test ({' '.join(command)}) exited with {child.returncode} and reported "
               f"{got}: not a whole test, or not what its exit status says. Its output:\n{child.stdout[-5000:]}")
    return [pytest.TestReport(item.nodeid, item.location, keywords, "passed", None, "setup"),
            pytest.TestReport(item.nodeid, item.location, keywords, "failed", message, "call"),
            pytest.TestReport(item.nodeid, item.location, keywords, "passed", None, "teardown")]


@pytest.fixture(autouse=True)
def _nncf_stays_in_child_processes(request):
    """Fails a test after which NNCF is imported in the shared pytest process (mark it ``isolated``)."""
    before = "nncf" in sys.modules
    yield
    if not IN_CHILD and "nncf" in sys.modules:
        who = "an earlier test or a test module's imports" if before else request.node.nodeid
        pytest.fail(f"NNCF was imported into the shared pytest process by {who}; it patches torch for every later "
                    "test. Mark the test that imports it @pytest.mark.isolated (it then runs in a child process).",
                    pytrace=False)
