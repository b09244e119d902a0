"""``python tests/crash_child.py STAGE -- <explorer CLI arguments>``: the explorer's command line, killed
with SIGKILL (``kill -9``: no exception, no ``finally``, no cleanup) by itself at one stage of a prune.

The crash tests (tests/test_crash.py) run it as a child process. STAGE is one of:
    dense fine-tune   at the dense fine-tune's third training step (after its first checkpoint)
    importance        as the training-free importance scores start
    recovery          at the recovery fine-tune's third step (after its first checkpoint)
    evaluation        while the pruned model generates its evaluation outputs
    writing           inside the final save: the model's weights written, ``plan.json`` not yet
Before dying it prints ``KILLED at <stage>: <progress message>`` to stderr.
"""

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MARKERS = {"dense fine-tune": "dense fine-tune: step 3/", "importance": "importance",
           "recovery": "recovery fine-tune: step 3/", "evaluation": "evaluation (pruned)"}


def kill(stage: str, message: str) -> None:
    print(f"KILLED at {stage}: {message}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    stage, sep, *args = sys.argv[1:]
    assert sep == "--" and (stage in MARKERS or stage == "writing"), "usage: crash_child.py STAGE -- ARGS"
    from explorer.cli import commands
    from explorer.cli.main import main as cli

    printer = commands._progress
    if stage in MARKERS:
        def progress(fraction: float, message: str) -> None:
            printer(fraction, message)
            if message.startswith(MARKERS[stage]):
                kill(stage, message)

        commands._progress = progress  # cmd_prune looks it up when it runs
    else:
        from pruning.plan import PruningPlan

        out = Path(args[args.index("--out") + 1]).resolve()
        save = PruningPlan.save

        def save_then_die(plan, directory):
            if Path(directory).resolve().parent == out.parent:  # the final folder's temporary sibling
                kill(stage, f"saving {out.name}: weights written to {Path(directory).name}, plan.json not")
            return save(plan, directory)

        PruningPlan.save = save_then_die
    sys.exit(cli(args))


if __name__ == "__main__":
    main()
