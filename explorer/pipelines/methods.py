"""The pruning methods a prune run can use: one registry, read by the settings, the CLI's ``--method``
and the Prune tab's dropdown (no heavy imports, so the CLI's help stays instant)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One way to make a prune run's plan (``explorer.pipelines.nash_steps.PLANNERS`` runs it).

    Attributes:
        name: The id in settings, run folders and the CLI (``--method``).
        label: The Prune tab's name for it.
        description: One line on what it does.
    """

    name: str
    label: str
    description: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("nash-training-free", "NASH (training-free)",
           "NASH, encoder units ranked by first-order Taylor importance (no training)"),
    Method("nash-learned", "NASH (learned gates)",
           "NASH, hard-concrete encoder gates trained under a Lagrangian sparsity target"),
    Method("decoder-only", "Decoder only (baseline)", "decoder shortened to k layers, encoder kept whole (baseline)"),
    Method("cofi", "CoFi (baseline, encoder and decoder widths)",
           "CoFi (baseline): head, neuron and sublayer gates on encoder and decoder under one sparsity target, "
           "every decoder layer kept"),
)}


def method_named(text: str) -> Method:
    """The method whose id or Prune-tab label is ``text``.

    Raises:
        ValueError: For neither.
    """
    for method in METHODS.values():
        if text in (method.name, method.label):
            return method
    raise ValueError(f"Unknown method {text!r}; use one of {', '.join(METHODS)}.")
