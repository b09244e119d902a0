"""The records EFTNAS passes between ``nas`` and ``explorer``: a subnetwork's configuration and a
point of the Pareto front, as frozen dataclasses with their JSON form.

Names: a *configuration* holds **widths**, the number of heads and of FFN neurons each encoder layer
keeps (0: the sublayer is skipped); a search space holds the **choices** of widths per layer
(``SearchSpace.heads`` / ``.neurons``); a pruning plan holds **kept indices** (``PruningPlan``).

JSON written before these records (``eftnas.json`` and ``front.json`` of runs made up to 2026-11-30,
including the shipped reference runs) named the widths ``heads`` / ``neurons`` and stored the search
metric twice, as ``metric`` and ``search_metric``; :meth:`FrontPoint.from_dict` reads both forms.
"""

from __future__ import annotations

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
