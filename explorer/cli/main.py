"""``python -m explorer``: parse, dispatch to a command, turn errors into one line and exit status 2."""

from __future__ import annotations

import sys

from explorer.cli.commands import (cmd_demo, cmd_eftnas, cmd_evaluate, cmd_finetune, cmd_measure, cmd_prune,
                                   cmd_prune_lm, cmd_report)
from explorer.cli.parser import build_parser

COMMANDS = {"prune": cmd_prune, "prune-lm": cmd_prune_lm, "finetune": cmd_finetune, "measure": cmd_measure,
            "evaluate": cmd_evaluate, "report": cmd_report, "eftnas": cmd_eftnas, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 a usage or input error)."""
    args = build_parser().parse_args(argv)
    import warnings

    from explorer.pipelines.nash_process import exit_with_parent

    exit_with_parent()  # when the app started this command as its child
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", message=".*better way to train encoder-decoder models.*")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written (permissions, a full disk)
        from explorer.paths import os_error_message

        print(f"error: {os_error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written to the output folder.", file=sys.stderr)
        return 130
