"""Speed of the explorer as a user feels it (the explorer issue, item 9); prints a table.

1. Start-up: from launching ``python app.py`` to the page being served (HTTP 200), and to the
   Pareto tab having drawn its plot in a headless browser (Debian's chromium via playwright),
   median of ``--startups`` fresh starts. Target: <= 10 s on 2 CPU cores.
2. One Prune-tab request as the app runs it (``start_prune``): training-free NASH on a
   flan-t5-small-sized model (its real config from ``../shared/models``, random weights: this
   measures time only, so the dense fine-tune is skipped), evaluation on 64 SAMSum test
   examples, and timing of dense and pruned (256 input / 64 new tokens, 5 repeats).
   Target: <= 60 s on CPU.

    .venv/bin/python scripts/bench_app.py [--startups 3] [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from app_process import start_app, stop_app  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def startup_once(runs: Path, browser) -> tuple[float, float | None]:
    """Seconds from launching app.py to HTTP 200, and to the Pareto plot drawn in ``browser``
    (already running, so its own start is not counted; None without chromium)."""
    start = time.perf_counter()
    proc, url = start_app({"EXPLORER_RUNS": str(runs)}, poll_s=0.05)
    try:
        served = time.perf_counter() - start
        drawn = None
        if browser is not None:
            from playwright.sync_api import expect

            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Pareto").click()
            expect(page.locator("#pareto-plot .legendtext").first).to_be_visible(timeout=60_000)
            drawn = time.perf_counter() - start
            page.close()
        return served, drawn
    finally:
        stop_app(proc)


def prune_once(device: str, runs: str, sparsity: float, layers: int) -> tuple[float, dict]:
    """Wall seconds of one Prune request on a flan-t5-small-sized model, and its metrics."""
    from explorer.backend.prune import start_prune
    from explorer.pipelines.nash_settings import PruneSettings, TimingSettings

    settings = PruneSettings(model=f"random:{SHARED / 'models' / 'flan-t5-small'}", task="samsum",
                             data_dir=str(SHARED / "data"), encoder_sparsity=sparsity, decoder_layers=layers,
                             eval_samples=64, device=device, dense_finetune=False, timing=TimingSettings())
    start = time.perf_counter()
    run = start_prune(settings, runs)
    return time.perf_counter() - start, run.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startups", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the prune benchmark")
    args = parser.parse_args()

    browser, pw = None, None
    if Path("/usr/bin/chromium").exists():
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    with tempfile.TemporaryDirectory() as runs:
        times = [startup_once(Path(runs), browser) for _ in range(args.startups)]
    if pw is not None:
        browser.close()
        pw.stop()
    served = statistics.median(t[0] for t in times)
    drawn = [t[1] for t in times if t[1] is not None]

    import torch

    torch.set_num_threads(args.threads)
    # A fresh cache, so the first prune is cold (scores and dense quality computed); the second,
    # at another budget, reuses them as a user's next prune of the same model does.
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as runs:
        os.environ["EXPLORER_CACHE"] = cache
        cold, metrics = prune_once(args.device, runs, 0.3, 3)
        warm, warm_metrics = prune_once(args.device, runs, 0.5, 2)

    from explorer.evaluation.latency import device_description

    def met(value: float, target: float) -> str:
        return "yes" if value <= target else "NO"

    print(f"Explorer speed on {device_description(args.device)}; start-up: median of {args.startups} fresh starts\n")
    print("| measurement | seconds | target | met |")
    print("|---|---|---|---|")
    print(f"| `python app.py` -> page served | {served:.1f} | <= 10 | {met(served, 10)} |")
    if drawn:
        d = statistics.median(drawn)
        print(f"| `python app.py` -> Pareto tab drawn (headless chromium, started beforehand) | {d:.1f} | <= 10 | "
              f"{met(d, 10)} |")
    else:
        print("| `python app.py` -> Pareto tab drawn | not measured: /usr/bin/chromium missing | <= 10 | ? |")
    print(f"| prune + evaluate 64 + timing, flan-t5-small size, first prune of the model | {cold:.1f} | <= 60 | "
          f"{met(cold, 60)} |")
    print(f"| the same, next budget of the same model (scores and dense quality cached) | {warm:.1f} | <= 60 | "
          f"{met(warm, 60)} |")
    print(f"\nstages (s), first: {metrics['stage_wall_s']}; next: {warm_metrics['stage_wall_s']}.")
    print("Random weights (no flan-t5-small weights offline): time only. They never emit EOS, so the evaluation "
          "generates the task's full target length for every example, the slowest case.")


if __name__ == "__main__":
    main()
