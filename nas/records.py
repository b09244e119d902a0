"""The records EFTNAS passes between ``nas`` and ``explorer``: a subnetwork's configuration, a point
of the Pareto front and the summary of a finished run, as dataclasses with their JSON form.

Names: a *configuration* holds **widths**, the number of heads and of FFN neurons each encoder layer
keeps (0: the sublayer is skipped); a search space holds the **choices** of widths per layer
(``SearchSpace.head_choices`` / ``.ffn_choices``); a pruning plan holds **kept indices** (``PruningPlan``).

JSON written before these records (``eftnas.json`` and ``front.json`` of runs made up to 2026-11-30,
including the shipped reference runs) named the widths ``heads`` / ``neurons`` and stored the search
metric twice, as ``metric`` and ``search_metric``; :meth:`FrontPoint.from_dict` reads both forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True)
class SubnetworkConfig:
    """Widths of one subnetwork of a BERT-style encoder, per layer.

    Attributes:
        head_widths: Attention heads kept in each encoder layer (0: attention skipped).
        ffn_widths: FFN (intermediate) neurons kept in each encoder layer (0: FFN skipped).
    """

    head_widths: tuple[int, ...]
    ffn_widths: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "head_widths", tuple(int(h) for h in self.head_widths))
        object.__setattr__(self, "ffn_widths", tuple(int(f) for f in self.ffn_widths))
        if len(self.head_widths) != len(self.ffn_widths):
            raise ValueError(f"{len(self.head_widths)} head widths but {len(self.ffn_widths)} FFN widths; give one of "
                             f"each per encoder layer.")


@dataclass(frozen=True)
class FrontPoint:
    """A subnetwork evaluated by the search, and (once on the front) measured on the reported split.

    Attributes:
        config: Its widths.
        macs: Encoder MACs at the search space's sequence length (batch 1).
        search_metric: The main metric on the search examples (held out of training; never the
            reported split), in % (x100 for correlations).
        macs_fraction: ``macs`` / the dense model's.
        gmacs: ``macs`` / 1e9.
        eval: Every metric of the task on the reported split (e.g. ``{"f1": 83.4, "accuracy": 77.2}``).
        latency_ms: One forward pass, batch 1, 128 tokens, on the machine it was measured on.
        params_m: Parameters of the extracted subnetwork, millions.
        eval_ci: Paired bootstrap interval of (subnetwork - dense) on the reported split
            (``{"diff", "low", "high", "n", "confidence"}``), when computed.
        latency_ms_first: The latency measured during the run, when ``latency_ms`` was re-timed later.
    """

    config: SubnetworkConfig
    macs: int
    search_metric: float
    macs_fraction: float | None = None
    gmacs: float | None = None
    eval: dict[str, float] | None = field(default=None, hash=False, compare=False)
    latency_ms: float | None = None
    params_m: float | None = None
    eval_ci: dict | None = field(default=None, hash=False, compare=False)
    latency_ms_first: float | None = None

    @property
    def head_widths(self) -> tuple[int, ...]:
        return self.config.head_widths

    @property
    def ffn_widths(self) -> tuple[int, ...]:
        return self.config.ffn_widths

    def measured(self, **values) -> FrontPoint:
        """A copy with measurements added (any of the optional attributes)."""
        return replace(self, **values)

    def to_dict(self) -> dict:
        """The JSON form: widths flat, unset measurements left out."""
        out = {"head_widths": list(self.head_widths), "ffn_widths": list(self.ffn_widths), "macs": self.macs,
               "search_metric": self.search_metric}
        for f in fields(self)[3:]:
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FrontPoint:
        """The point of :meth:`to_dict`, or of the older form (``heads`` / ``neurons`` / ``metric``).

        Raises:
            ValueError: If the widths, MACs or search metric are missing.
        """
        try:
            config = SubnetworkConfig(data["head_widths"] if "head_widths" in data else data["heads"],
                                      data["ffn_widths"] if "ffn_widths" in data else data["neurons"])
            search = data["search_metric"] if "search_metric" in data else data["metric"]
            macs = data["macs"]
        except KeyError as err:
            raise ValueError(f"A front point needs widths, MACs and a search metric; {err} is missing.") from None
        optional = {f.name: data[f.name] for f in fields(cls)[3:] if f.name in data}
        return cls(config, int(macs), float(search), **optional)


@dataclass
class RunSummary:
    """A finished EFTNAS run, as its ``eftnas.json`` records it (``explorer.pipelines.eftnas`` writes
    it; the EFTNAS tab, the CLI and the table scripts read it).

    Attributes:
        model: The model spec (e.g. ``"minilm"``); ``task``: the task name.
        weights: ``"pretrained"`` or ``"random"`` (quality numbers of random weights mean nothing).
        device: The machine the run was measured on, in words.
        metric: The task's main metric (the search objective and the front's y-axis).
        eval_split: The reported split; ``eval_examples``: its size.
        dense: The dense (fine-tuned) model measured like the front: ``eval`` (metrics, %), ``search``,
            ``gmacs``, ``macs``, ``latency_ms`` (one forward, batch 1, 128 tokens), ``params_m``, and
            ``latency_ms_first`` once re-timed.
        front: The Pareto front, measured (:class:`FrontPoint`, ascending MACs as searched).
        search_on: Where the search metric came from (held-out training examples, never the reported
            split); ``search_examples``, ``train_examples``: their counts.
        settings: The run's ``EftnasSettings`` as a dict.
        finetune, movement, supernet: Each training stage's record (steps, wall seconds, curve, ...).
        evaluated: Subnetworks the search evaluated.
        timings_s: Wall seconds per stage; ``wall_s``: their sum; ``resumed``: stages resumed from disk.
        retimed: Provenance of a later quiet re-timing (``scripts/eftnas_retime.py``), if any.
        method: Always ``"eftnas"``.
        extra: Keys of the file this version does not know, written back unchanged.
    """

    model: str
    task: str
    weights: str
    device: str
    metric: str
    eval_split: str
    eval_examples: int
    dense: dict
    front: list[FrontPoint]
    search_on: str = ""
    search_examples: int = 0
    train_examples: int = 0
    settings: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    movement: dict = field(default_factory=dict)
    supernet: dict = field(default_factory=dict)
    evaluated: int = 0
    timings_s: dict = field(default_factory=dict)
    wall_s: float = 0.0
    resumed: list = field(default_factory=list)
    retimed: dict | None = None
    method: str = "eftnas"
    extra: dict = field(default_factory=dict)

    @property
    def dense_quality(self) -> float:
        """The dense model's main metric on the reported split."""
        return self.dense["eval"][self.metric]

    def to_dict(self) -> dict:
        """The JSON form (front points in theirs; ``retimed`` left out when unset)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("front", "extra", "retimed")}
        out["front"] = [p.to_dict() for p in self.front]
        if self.retimed is not None:
            out["retimed"] = self.retimed
        return {**out, **self.extra}

    def to_json(self) -> str:
        """The text of ``eftnas.json``."""
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, data: dict) -> RunSummary:
        """The summary of :meth:`to_dict` (front points also in their older JSON form).

        Raises:
            ValueError: If a required field is missing or a front point is malformed.
        """
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["front"] = [FrontPoint.from_dict(p) for p in data["front"]]
            return cls(**values, extra={k: v for k, v in data.items() if k not in known})
        except (KeyError, TypeError) as err:
            raise ValueError(f"Not an EFTNAS run summary ({err}).") from None
