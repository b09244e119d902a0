"""Importing NNCF the way ``nas`` needs it, in one place.

NNCF 2.19 reads two environment variables when it is first imported: ``NNCF_TORCH_LEGACY_TRACING=1``
(the legacy tracer, which is the one that traces BERT's attention for movement sparsity and
BootstrapNAS) and ``CI=true`` (no telemetry). Importing it also patches torch for the whole process,
which is why the explorer trains EFTNAS in a child process and never imports NNCF itself.
"""

from __future__ import annotations

import os
import sys


def import_nncf():
    """``nncf``, imported with the settings above.

    Before NNCF's first import the two variables are set for this process (an explicit
    ``NNCF_TORCH_LEGACY_TRACING`` other than 1 is refused). After it, they are only checked.

    Raises:
        RuntimeError: If NNCF is (or would be) imported without the legacy tracer.
    """
    tracing = os.environ.get("NNCF_TORCH_LEGACY_TRACING")
    if "nncf" not in sys.modules and tracing is None:
        os.environ["NNCF_TORCH_LEGACY_TRACING"] = "1"
        os.environ.setdefault("CI", "true")
    elif os.environ.get("NNCF_TORCH_LEGACY_TRACING") != "1":
        raise RuntimeError("NNCF must be imported with NNCF_TORCH_LEGACY_TRACING=1 (its legacy tracer traces the "
                           "attention blocks); unset the variable or set it to 1, before NNCF is first imported.")
    import nncf

    return nncf
