"""The explorer as users meet it: ``python app.py`` on 127.0.0.1, driven by gradio_client and by a
real browser (Debian's chromium through Python playwright).

The browser test skips when /usr/bin/chromium is missing, unless ``EXPLORER_REQUIRE_BROWSER=1``
(set by ``.ci/run``, which installs chromium), where it fails instead. Its screenshots go to the
test's temporary folder; ``EXPLORER_SCREENSHOTS=<folder>`` also copies them there to look at.
"""

import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from app_process import folders_env, start_app, stop_app
from conftest import ROOT, SHARED

T5_DIR = SHARED / "models" / "t5-small"
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow,  # each starts app.py or shares its start; two prune, one drives a browser
              pytest.mark.skipif(not (SHARED / "data" / "SAMSum").exists() or not T5_DIR.exists(),
                                 reason="../shared/data and ../shared/models are not beside the project")]
# Prune settings that finish in seconds on a tiny model (the order of the Prune tab's inputs).
FAST = dict(sparsity=0.5, layers=2, selection="uniform", recovery=1, device="cpu", eval_samples=2, finetune_steps=1,
            input_tokens=16, new_tokens=4, repeats=1, gate_steps=2)


def serve(base: Path):
    """Start ``python app.py`` with runs folder ``base/runs`` and cache ``base/cache``; returns
    (process, url) once the page is served (its output in ``base/app.log``)."""
    try:
        return start_app(folders_env(base), log=base / "app.log", timeout_s=120)
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``python app.py`` in a subprocess with its own runs folder and cache; yields (url, runs, tiny model)."""
    from tiny import save_tiny_t5

    base = tmp_path_factory.mktemp("app")
    tiny = save_tiny_t5(base / "tiny-t5", T5_DIR)
    proc, url = serve(base)
    yield url, base / "runs", str(tiny)
    stop_app(proc)


def test_the_app_listens_on_loopback_only(app):
    url, _, _ = app
    port = int(url.rsplit(":", 1)[1].strip("/"))
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:  # the address this machine would send from (a UDP connect sends nothing)
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addresses.add(s.getsockname()[0])
        except OSError:
            pass
    addresses -= {"127.0.0.1", "::1"}
    if not addresses:
        pytest.skip("this machine has no address besides loopback to probe")
    for address in addresses:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            s.settimeout(1)
            assert s.connect_ex((address, port)) != 0, f"the app answers on {address}"


def test_gradio_client_prunes_a_tiny_model_and_reads_the_run_back(app, tmp_path):
    from gradio_client import Client
    from transformers import GPT2Config

    url, runs, tiny = app
    client = Client(url, verbose=False)
    summary = client.predict(tiny, "samsum", "NASH (training-free)", *FAST.values(), api_name="/prune")
    assert "Run **" in summary and "speed-up" in summary
    run_id = summary.split("Run **")[1].split("**")[0]
    assert (runs / run_id / "metrics.json").exists() and (runs / run_id / "plan.json").exists()
    # Read it back through the Pareto tab's endpoint: the run is in the table of samsum runs.
    fig, note, table, csv, pick, plan_pick = client.predict("samsum", "latency_ms", "absolute", "kind", True, False,
                                                            api_name="/pareto")
    rows = [(row[0], row[1]) for row in table["data"]]
    assert (run_id, "measured") in rows and (run_id, "dense") in rows  # the pruned run and its dense model
    assert Path(csv).read_text().count(run_id) == 2
    # ... and its plan draws in the plan view.
    plan_fig, caption = client.predict(run_id, api_name="/plan")
    assert "Method: nash-training-free" in caption and plan_fig
    # Its model downloads as a zip that loads with the documented loader.
    import zipfile

    from pruning import load_pruned

    with zipfile.ZipFile(client.predict(run_id, api_name="/zip_run")) as archive:
        archive.extractall(tmp_path / "unzipped")
    assert load_pruned(tmp_path / "unzipped" / run_id).config.num_decoder_layers == 2
    # Bad input becomes a clear message, not a stack trace; nothing is added to the runs folder.
    gpt2 = tmp_path / "gpt2"
    GPT2Config(n_layer=2).save_pretrained(gpt2)
    with pytest.raises(Exception, match="decoder-only"):
        client.predict(str(gpt2), "samsum", "NASH (training-free)", *FAST.values(), api_name="/prune")
    with pytest.raises(Exception, match="has 4 decoder layers; cannot keep 5"):
        client.predict(tiny, "samsum", "NASH (training-free)", *dict(FAST, layers=5).values(), api_name="/prune")
    with pytest.raises(Exception, match="no-such-model-xyz"):
        client.predict("no-such-model-xyz", "samsum", "NASH (training-free)", *FAST.values(), api_name="/prune")
    assert sorted(p.name for p in runs.iterdir()) == [run_id]


def _prune(tiny, **changes):
    settings = dict(FAST, **{k: v for k, v in changes.items() if k in FAST})
    return ((changes.get("model", tiny), changes.get("task", "samsum"), changes.get("method", "NASH (training-free)"),
             *settings.values()), "/prune")


def _lm(**changes):
    """Inputs of the Prune tab's decoder-only LM section (``/prune_lm``), small, with ``changes``."""
    values = dict(model="smollm2-135m", layers=20, selection="block-influence", width=0.0, heal_steps=0, heal="lora",
                  eval_texts=10, zero_shot=10, summaries=2, device="cpu")
    return tuple({**values, **changes}.values())


# The UI half of the bad-input battery (the CLI half: test_bad_input.py): (inputs, endpoint, message).
UI_CASES = {
    "prune-unknown-model": lambda t: (*_prune(t, model="no-such-model-xyz"), "no-such-model-xyz"),
    "prune-empty-model": lambda t: (*_prune(t, model="   "), "Choose a model"),
    "prune-sparsity-above-1": lambda t: (*_prune(t, sparsity=1.5), "greater than maximum value 0.95"),
    "prune-sparsity-negative": lambda t: (*_prune(t, sparsity=-0.2), "less than minimum value 0.0"),
    "prune-decoder-layers-0": lambda t: (*_prune(t, layers=0), "less than minimum value 1"),
    "prune-eval-samples-0": lambda t: (*_prune(t, eval_samples=0), "less than minimum value 1"),
    "prune-recovery-negative": lambda t: (*_prune(t, recovery=-1), "less than minimum value 0"),
    "prune-repeats-0": lambda t: (*_prune(t, repeats=0), "less than minimum value 1"),
    "prune-unknown-task": lambda t: (*_prune(t, task="samsung"), "not in the list of choices"),
    "prune-truncated-weights": lambda t: (*_prune(t, model=f"{t}-truncated"), "could not be loaded"),
    "generate-empty": lambda t: (([], "", "samsum", False), "/generate", "Enter some text"),
    "generate-whitespace": lambda t: (([], " \n\t ", "samsum", False), "/generate", "Enter some text"),
    "generate-100k-characters": lambda t: (([], "word " * 20_000, "samsum", False), "/generate", "100,000 characters"),
    "generate-no-run": lambda t: (([], "A: hi", "samsum", False), "/generate", "Choose at least one run"),
    "generate-path-as-run": lambda t: ((["../../etc"], "A: hi", "samsum", False), "/generate", "not in the list of choices"),
    "plan-path-as-run": lambda t: (("../etc/passwd",), "/plan", "not in the list of choices"),
    "zip-path-as-run": lambda t: (("../runs",), "/zip_run", "not in the list of choices"),
    "pareto-unknown-task": lambda t: (("samsung", "latency_ms", "absolute", "kind", True, True), "/pareto", "not in the list of choices"),
    "example-unknown-task": lambda t: (("samsung",), "/example", "not in the list of choices"),
    "prune-lm-unknown-model": lambda t: (_lm(model="gpt-17"), "/prune_lm", "not in the list of choices"),
    "prune-lm-layers-40": lambda t: (_lm(layers=40), "/prune_lm", "greater than maximum value 30"),
    "prune-lm-width-1": lambda t: (_lm(width=1.0), "/prune_lm", "greater than maximum value 0.9"),
    "prune-lm-eval-texts-0": lambda t: (_lm(eval_texts=0), "/prune_lm", "less than minimum value 1"),
    "pareto-lm-unknown-metric": lambda t: (("lm-samsum", "latency_ms", "absolute", "kind", True, True, "bleu"),
                                           "/pareto", "not in the list of choices"),
    "eftnas-open-unknown-run": lambda t: (("no such run",), "/eftnas_open", "not in the list of choices"),
    "eftnas-extract-before-open": lambda t: (("macs", 50), "/eftnas_extract", "Open a run first"),
    "eftnas-classify-before-choosing": lambda t: (("a fine film",), "/eftnas_classify", "choose a budget first"),
}


@pytest.mark.parametrize("case", list(UI_CASES))
def test_bad_input_in_the_ui_is_one_clear_message_and_changes_nothing(case, app):
    """Through gradio_client, as a Space's visitors and scripts call it: a gr.Error with a message that
    says what to change (no traceback reaches the page), the runs folder as it was, the app still up."""
    from gradio_client import Client

    url, runs, tiny = app
    truncated = Path(f"{tiny}-truncated")
    if not truncated.exists():
        shutil.copytree(tiny, truncated)
        (truncated / "model.safetensors").write_bytes((truncated / "model.safetensors").read_bytes()[:1000])
    inputs, endpoint, message = UI_CASES[case](tiny)
    before = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as raised:
        client.predict(*inputs, api_name=endpoint)
    assert message in str(raised.value) and "Traceback" not in str(raised.value), str(raised.value)
    assert (sorted(p.name for p in runs.iterdir()) if runs.exists() else []) == before
    assert client.predict("samsum", "latency_ms", "absolute", "kind", True, False, api_name="/pareto")


def test_the_battery_has_at_least_forty_cases_with_the_cli():
    from test_bad_input import CASES

    assert len(UI_CASES) + len(CASES) >= 40


def test_the_page_answers_while_a_prune_runs(app):
    """Long jobs go through the queue; other requests are served meanwhile."""
    from gradio_client import Client

    url, runs, tiny = app
    client = Client(url, verbose=False)
    job = client.submit(tiny, "samsum", "NASH (training-free)", *dict(FAST, recovery=20).values(), api_name="/prune")
    while job.status().code.name not in ("PROCESSING", "ITERATING", "FINISHED"):
        time.sleep(0.1)
    start = time.perf_counter()
    client.predict("samsum", "gmacs", "relative", "method", True, True, api_name="/pareto")
    answered = time.perf_counter() - start
    assert not job.done(), f"the prune finished before the Pareto request was answered ({answered:.1f} s)"
    assert "Run **" in job.result(timeout=300)


def test_sixteen_sessions_during_a_prune_and_an_eftnas_training_get_no_errors_and_lose_no_run(app):
    """The load test (scripts/bench_load.py prints its response times): 16 gradio_client sessions click
    through the Pareto and Compare tabs while a prune and an EFTNAS training run; every call is
    answered without an error, both jobs finish, and no earlier run's file changes. Bounded: 30 s."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_load import fingerprint, jobs, run_load
    from gradio_client import Client

    url, runs, tiny = app
    quick = Client(url, verbose=False).predict(tiny, "samsum", "NASH (training-free)", *FAST.values(), api_name="/prune")
    run_id = quick.split("Run **")[1].split("**")[0]
    before = fingerprint(runs)
    prune, eftnas = jobs(url, tiny, "samsum", 100, f"random:{SHARED / 'models' / 'bert-mini'}", (200, 10, 10, 10))
    load = run_load(url, run_id, sessions=16, seconds=30, think=1.0)
    assert not load.errors, load.errors[:5]
    assert {"/pareto", "/list_runs", "/example", "/generate"} <= set(load.calls)
    assert sum(len(times) for times in load.calls.values()) >= 16 * 4  # every session made its round
    assert "Run **" in prune.result(timeout=900)
    assert "Trained" in eftnas.result(timeout=900)[0]
    after = fingerprint(runs)
    assert {p: after.get(p) for p in before} == before  # nothing lost or changed
    def finished(files):  # run folders with their results file: prune runs, and EFTNAS runs under eftnas/
        return {str(Path(p).parent) for p in files if Path(p).name in ("metrics.json", "eftnas.json")}

    new = finished(after) - finished(before)
    assert len(new) == 2 and sum(n.startswith("eftnas/") for n in new) == 1, new


def need_chromium() -> None:
    """Skip without Debian's chromium, unless ``EXPLORER_REQUIRE_BROWSER=1`` (then fail)."""
    if not CHROMIUM.exists():
        if os.environ.get("EXPLORER_REQUIRE_BROWSER") == "1":
            pytest.fail("EXPLORER_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")


def launch(pw):
    """Headless Debian chromium, offline (no component updates, no background networking)."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def keep_screenshots(tmp_path: Path, *names: str) -> None:
    """Copy screenshots to ``EXPLORER_SCREENSHOTS`` when it is set (for a person to look at)."""
    if os.environ.get("EXPLORER_SCREENSHOTS"):
        keep = Path(os.environ["EXPLORER_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(tmp_path / name, keep / name)


def test_browser_prunes_sees_the_new_point_and_two_generations(app, tmp_path):
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    url, runs, tiny = app
    before = {p.name for p in runs.iterdir()} if runs.exists() else set()
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)
        page.goto(url)
        # First look: the Pareto tab draws the shipped reference runs without any run of one's own.
        page.get_by_role("tab", name="Pareto").click()
        expect(page.locator("#pareto-plot .legendtext", has_text="reference").first).to_be_visible()
        # ... and the EFTNAS tab has drawn its first reference run's front without a click.
        page.get_by_role("tab", name="EFTNAS").click()
        expect(page.locator("#eftnas-front .legendtext", has_text="subnetworks").first).to_be_visible(timeout=120_000)
        # Prune a tiny model on SAMSum.
        page.get_by_role("tab", name="Prune").click()
        model = page.locator("#prune-model input")
        model.fill(tiny)
        model.press("Enter")
        task = page.locator("#prune-task input")
        task.fill("samsum")
        page.get_by_role("option", name="samsum", exact=True).click()
        page.get_by_label("Recovery fine-tuning steps (0: none)").fill("1")
        page.get_by_label("Evaluation examples").fill("2")
        page.get_by_text("Dense fine-tuning and timing").click()
        for label, value in (("Dense fine-tuning steps (cached)", "1"), ("Timing: input tokens", "16"),
                             ("Timing: new tokens", "4"), ("Timing: repeats (median)", "1")):
            page.get_by_label(label).fill(value)
            page.get_by_label(label).press("Tab")
        # The estimate follows the settings (the dense model may be cached by the gradio_client test).
        # (A first estimate times a training step of the model, after the page-load estimate of the default.)
        expect(page.locator("#finetune-estimate")).to_contain_text(
            re.compile(r"tiny-t5 is already fine-tuned for samsum|fine-tunes it for 1 steps"), timeout=180_000)
        expect(page.locator("#finetune-estimate")).to_contain_text("Then 1 recovery step:", timeout=180_000)
        page.locator("#prune-button").click()
        expect(page.locator("#prune-result")).to_contain_text("speed-up", timeout=240_000)
        new = {p.name for p in runs.iterdir()} - before
        assert len(new) == 1
        run_id = new.pop()
        # The new point is on the Pareto tab (samsum), coloured as one of your runs.
        page.get_by_role("tab", name="Pareto").click()
        pareto_task = page.locator("#pareto-task input")
        pareto_task.fill("samsum")
        page.get_by_role("option", name="samsum", exact=True).click()
        expect(page.locator("#pareto-plot .legendtext", has_text="measured")).to_be_visible()
        expect(page.locator("#pareto-plot .legendtext", has_text="reference").first).to_be_visible()  # the shipped
        # SAMSum method comparison is drawn beside it; the plan view lists the new run first.
        expect(page.locator("#plan-run input")).to_have_value(run_id)
        expect(page.locator("#plan-plot .gtitle").first).to_contain_text(run_id)
        page.screenshot(path=str(tmp_path / "browser-test-pareto.png"), full_page=True)
        # Two generations side by side in the Compare tab: dense and the new run.
        page.get_by_role("tab", name="Compare").click()
        runs_box = page.locator("#compare-runs input")
        runs_box.click()
        page.get_by_role("option", name=run_id).click()
        page.locator("#compare-input textarea").fill("summarize: Amanda baked cookies and will bring Jerry some.")
        page.locator("#generate-button").click()
        for i in (0, 1):  # both outputs streamed and finished
            head = page.locator(f"#compare-head-{i}")
            expect(head).to_contain_text(re.compile(r"ms/token, \d+ ms total, \d+ tokens"), timeout=120_000)
            expect(head).not_to_contain_text("generating", timeout=120_000)
        expect(page.locator("#compare-head-1")).to_contain_text("of encoder head and FFN parameters removed")
        page.screenshot(path=str(tmp_path / "browser-test.png"), full_page=True)
        browser.close()
    assert (tmp_path / "browser-test.png").stat().st_size > 10_000
    keep_screenshots(tmp_path, "browser-test-pareto.png", "browser-test.png")


def test_first_look_one_click_from_a_fresh_page_to_dense_and_pruned_generating(tmp_path):
    """A new visitor on a fresh machine (empty runs folder and cache): one click on Start here runs
    the offline default end to end (real MiniLM2MiniLM weights, rotten_tomatoes) with progress, and
    the Compare tab opens with the dense and the pruned model generating side by side. A second
    visitor's click reuses that run. Prints the minutes from opening the page to both outputs."""
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    proc, url = serve(tmp_path)
    runs = tmp_path / "runs"
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            start = time.perf_counter()
            page.goto(url)
            expect(page.locator("#start-here")).to_be_visible()
            page.screenshot(path=str(tmp_path / "first-look-0-page.png"), full_page=True)
            page.locator("#start-here").click()
            # Progress shows while it runs (Gradio's progress on the status line).
            expect(page.locator("#start-here-status")).to_contain_text(re.compile(r"dense|fine-tun|loading"),
                                                                       timeout=300_000)
            expect(page.locator("#start-here-status .progress-text, #start-here-status .progress-level").first
                   ).to_be_visible()
            page.screenshot(path=str(tmp_path / "first-look-1-progress.png"), full_page=True)
            expect(page.locator("#start-here-status")).to_contain_text("Made run", timeout=1_800_000)
            for i in (0, 1):  # the Compare tab opened and both outputs streamed and finished
                head = page.locator(f"#compare-head-{i}")
                expect(head).to_contain_text(re.compile(r"ms/token, \d+ ms total, \d+ tokens"), timeout=300_000)
                expect(head).not_to_contain_text("generating", timeout=300_000)
            minutes = (time.perf_counter() - start) / 60
            expect(page.locator("#compare-head-0")).to_contain_text("dense")
            expect(page.locator("#compare-head-1")).to_contain_text("of encoder head and FFN parameters removed")
            for i in (0, 1):
                expect(page.locator(f"#compare-out-{i} textarea")).to_have_value(re.compile(r"\S"))
            expect(page.locator("#compare-head-1")).to_contain_text(re.compile(r"reference .*: (correct|wrong)"))  # scored
            page.screenshot(path=str(tmp_path / "first-look-2-compare.png"), full_page=True)
            (run_id,) = [p.name for p in runs.iterdir() if not p.name.startswith(".")]
            expect(page.locator("#compare-runs")).to_contain_text(run_id)
            # A second visitor: the same click reuses the run (no second prune).
            other = browser.new_page(viewport={"width": 1400, "height": 1600})
            other.goto(url)
            other.locator("#start-here").click()
            expect(other.locator("#start-here-status")).to_contain_text(f"Reused run **{run_id}**".replace("**", ""))
            expect(other.locator("#compare-head-1")).to_contain_text(re.compile(r"ms/token"), timeout=300_000)
            browser.close()
        assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [run_id]
        print(f"first look: {minutes:.1f} min from opening the page to both generations (fresh runs and cache)")
    finally:
        stop_app(proc)
    keep_screenshots(tmp_path, "first-look-0-page.png", "first-look-1-progress.png", "first-look-2-compare.png")
