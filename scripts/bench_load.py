"""The explorer under load: many sessions at once while a prune and an EFTNAS training run (issue 17).

Starts ``python app.py`` (loopback, its own runs folder and cache), makes one quick run so the Compare
tab has a pruned model to generate with, then starts a prune and an EFTNAS super-network training
through the app's API and, while they run, ``--sessions`` concurrent users (one ``gradio_client``
session each) click through the Pareto and Compare tabs: ``/pareto``, ``/list_runs``, ``/example``,
``/generate``, with a random think time of up to ``--think`` seconds between clicks, for
``--seconds`` (or until both jobs end). Prints, per endpoint, the calls, errors, and the median, p95
and largest response time; then whether both jobs finished and every earlier run is unchanged.

    .venv/bin/python scripts/bench_load.py                    # 16 sessions, 60 s, tiny random models
    .venv/bin/python scripts/bench_load.py --real             # the offline default's real models (slower jobs)

``/generate`` streams: its row is the whole generation (both models, one after the other), and the row
``/generate: first output`` the wait until the first streamed update reached the session.
Target (issue 17): zero errors; p95 of the Pareto and Compare endpoints under 2 s. Loopback only;
every loop is bounded by ``--seconds``. tests/test_app.py runs the same load (``run_load``) shorter and
asserts zero errors and no lost runs, not the times.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# The Pareto and Compare tabs' endpoints as a user calls them (gradio_client: State inputs are left out).
PARETO = ("samsum", "latency_ms", "absolute", "kind", True, False)


@dataclass
class Load:
    """What one load run saw: ``calls[endpoint] = [seconds, ...]``, ``errors = [(endpoint, message)]``."""

    calls: dict[str, list[float]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.calls.setdefault(endpoint, []).append(seconds)
            if error is not None:
                self.errors.append((endpoint, error))

    def table(self) -> str:
        rows = ["| endpoint | calls | errors | median (s) | p95 (s) | max (s) |", "|---|---|---|---|---|---|"]
        for endpoint, times in sorted(self.calls.items()):
            errors = sum(1 for e, _ in self.errors if e == endpoint)
            rows.append(f"| {endpoint} | {len(times)} | {errors} | {statistics.median(times):.2f} | "
                        f"{p95(times):.2f} | {max(times):.2f} |")
        return "\n".join(rows)


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def run_load(url: str, run_id: str, sessions: int, seconds: float, think: float, busy=lambda: True,
             seed: int = 0) -> Load:
    """``sessions`` users clicking through Pareto and Compare for at most ``seconds`` (and only while
    ``busy()``), each with its own gradio_client session. Never raises for a failed call: it is
    recorded in ``Load.errors``."""
    from gradio_client import Client

    load, deadline = Load(), time.monotonic() + seconds
    calls = [("/pareto", PARETO), ("/list_runs", ()), ("/example", ("samsum",)),
             ("/generate", ([run_id], "summarize: Amanda baked cookies and will bring Jerry some.", "samsum", False))]

    def user(index: int) -> None:
        rng, seen = random.Random(seed + index), {}
        try:
            client = Client(url, verbose=False)
        except Exception as err:  # noqa: BLE001  (every failure is a recorded error, never a crash)
            load.record("connect", 0.0, repr(err))
            return
        while time.monotonic() < deadline and busy():
            for endpoint, args in calls:
                start = time.perf_counter()
                error = None
                try:
                    if endpoint == "/generate":  # streamed: also the wait for its first output
                        job = client.submit(*args, api_name=endpoint)
                        for _ in job:
                            if "/generate: first output" not in seen:
                                seen["/generate: first output"] = time.perf_counter() - start
                        job.result()
                    else:
                        client.predict(*args, api_name=endpoint)
                except Exception as err:  # noqa: BLE001
                    error = repr(err)[:300]
                load.record(endpoint, time.perf_counter() - start, error)
                for name, seconds in seen.items():
                    load.record(name, seconds, None)
                seen.clear()
                time.sleep(rng.uniform(0, think))
                if time.monotonic() >= deadline:
                    break

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 300)
    return load


def fingerprint(runs: Path) -> dict[str, str]:
    """sha256 of every file of every run in the runs folder (hidden work folders aside)."""
    return {str(p.relative_to(runs)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(runs.rglob("*")) if p.is_file() and not any(part.startswith(".")
                                                                          for part in p.relative_to(runs).parts)}


def jobs(url: str, prune_model: str, prune_task: str, recovery: int, eftnas_model: str, eftnas_args: tuple):
    """Submit a prune and an EFTNAS training (gradio_client jobs) and wait until both are running."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    prune = client.submit(prune_model, prune_task, "NASH (training-free)", 0.5, 2, "uniform", recovery, "cpu", 4,
                          20, 16, 4, 1, 2, "none", api_name="/prune")
    eftnas = client.submit(eftnas_model, "sst2", "cpu", *eftnas_args, api_name="/eftnas_train")
    deadline = time.monotonic() + 300
    running = ("PROCESSING", "PROGRESS", "ITERATING", "LOG", "FINISHED")  # gradio_client's Status names
    while not all(j.status().code.name in running for j in (prune, eftnas)):
        if time.monotonic() > deadline:
            raise RuntimeError("the prune and the EFTNAS training did not start within 5 min")
        time.sleep(0.2)
    return prune, eftnas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=2.0, help="largest pause between a user's clicks (s)")
    parser.add_argument("--real", action="store_true", help="prune MiniLM2MiniLM and train MiniLM (real weights)")
    args = parser.parse_args()
    from app_process import start_app, stop_app
    from gradio_client import Client
    from tiny import save_tiny_t5

    from explorer.evaluation.latency import device_description

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        base = Path(tmp)
        tiny = str(save_tiny_t5(base / "tiny-t5", SHARED / "models" / "t5-small"))
        proc, url = start_app({"EXPLORER_RUNS": str(base / "runs"), "EXPLORER_CACHE": str(base / "cache")},
                              log=base / "app.log")
        try:
            client = Client(url, verbose=False)
            quick = client.predict(tiny, "samsum", "NASH (training-free)", 0.5, 2, "uniform", 1, "cpu", 2, 1, 16, 4,
                                   1, 2, "none", api_name="/prune")
            run_id = quick.split("Run **")[1].split("**")[0]
            before = fingerprint(base / "runs")
            if args.real:
                prune, eftnas = jobs(url, "minilm2minilm", "samsum", 100, "minilm", (2000, 100, 100, 100))
            else:
                prune, eftnas = jobs(url, tiny, "samsum", 400, f"random:{SHARED / 'models' / 'bert-mini'}",
                                     (400, 40, 40, 40))
            start = time.monotonic()
            load = run_load(url, run_id, args.sessions, args.seconds, args.think)
            loaded_s = time.monotonic() - start
            still = [name for name, job in (("prune", prune), ("EFTNAS", eftnas)) if not job.done()]
            print(f"{args.sessions} sessions for {loaded_s:.0f} s "
                  f"({'real models' if args.real else 'tiny random models'}), think time up to {args.think} s, on "
                  f"{device_description('cpu')}; running meanwhile: a prune and an EFTNAS training "
                  f"({', '.join(still) or 'none'} still running when the load ended).\n")
            print(load.table())
            print(f"\nerrors: {len(load.errors)}" + "".join(f"\n  {e}: {m}" for e, m in load.errors[:10]), flush=True)
            results = {name: job.result(timeout=3600) for name, job in (("prune", prune), ("EFTNAS", eftnas))}
            after = fingerprint(base / "runs")
        finally:
            stop_app(proc)
    lost = [p for p, digest in before.items() if after.get(p) != digest]
    print(f"prune: {'finished' if 'Run **' in results['prune'] else results['prune']}; EFTNAS: "
          f"{'finished' if 'Trained' in str(results['EFTNAS']) else results['EFTNAS']}; earlier run files changed or "
          f"lost: {len(lost)}")

if __name__ == "__main__":
    main()
