"""The pruning plan: a frozen, JSON-serialisable description of a smaller model.

Decide first (importance scores, learned gates, a NAS search), then apply one plan
deterministically with :func:`pruning.surgery.apply_plan`. Every method of the
product (training-free NASH, learned NASH, CoFi, EFTNAS subnetworks) produces this
same object, so they differ only in *how* the plan is chosen.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from .atomic import atomic_write_text

PLAN_FILE = "plan.json"
PLAN_FORMAT_VERSION = 5  # 2 added the optional decoder widths, 3 the hidden dims, 4 the quantization, 5 named
# every index field kept_* (a count is num_*); older files load
# Field names before format 5: every one held kept indices, which the new names say.
_OLD_FIELD_NAMES = {"decoder_layers": "kept_decoder_layers", "encoder_heads": "kept_encoder_heads",
                    "encoder_neurons": "kept_encoder_neurons", "decoder_heads": "kept_decoder_heads",
                    "decoder_cross_heads": "kept_cross_heads", "decoder_neurons": "kept_decoder_neurons",
                    "hidden_dims": "kept_hidden_dims"}


@dataclass(frozen=True)
class PruningPlan:
    """Which parts of an encoder-decoder (or encoder) transformer to keep.

    Indices always refer to the *original* (dense) model, so a plan can be read
    without the pruned checkpoint.

    Attributes:
        family: Model family the plan was made for (``"t5"``, ``"bart"``,
            ``"bert2bert"``, ``"bert"``).
        num_decoder_layers: L, decoder layers of the dense model (0 for encoders).
        num_heads: H, attention heads per encoder layer of the dense model.
        ffn_dim: FFN intermediate size per encoder layer of the dense model.
        kept_decoder_layers: Kept decoder layer indices in [0, L), strictly increasing.
        kept_encoder_heads: For each encoder layer, the kept head indices in [0, H),
            strictly increasing.
        kept_encoder_neurons: For each encoder layer, the kept FFN neuron indices in
            [0, ffn_dim), strictly increasing.
        decoder_num_heads: Heads per decoder self- and cross-attention of the dense
            model (0 when the plan leaves decoder widths alone).
        decoder_ffn_dim: FFN intermediate size per decoder layer of the dense model (0
            likewise).
        kept_decoder_heads: Empty (every decoder self-attention head kept), or for each
            dense decoder layer the kept self-attention head indices in
            [0, decoder_num_heads); only the entries of kept layers are used.
        kept_cross_heads: The same for the cross-attention heads.
        kept_decoder_neurons: The same for the decoder FFN neurons, in [0, decoder_ffn_dim).
        hidden_size: d, the dense model's hidden size (0 when the plan leaves it alone).
        kept_hidden_dims: Empty (every hidden dimension kept), or the kept hidden dimensions in
            [0, hidden_size), strictly increasing, non-empty: CoFi's hidden-dimension pruning,
            one set for every embedding, norm and Linear on the residual stream of encoder
            and decoder.
        quantization: ``"none"`` or ``"int8"`` (``pruning.quantization``): the saved weights are
            fp32, and :func:`pruning.load_pruned` quantizes them at load.
        notes: Free-form provenance (method, importance criterion, seed). Not used
            by surgery.

    Raises:
        ValueError: On construction, if any index is out of range, repeated or
            unsorted, if no decoder layer is kept while the model has a decoder,
            or if the per-layer lists disagree in length.
    """

    family: str
    num_decoder_layers: int
    num_heads: int
    ffn_dim: int
    kept_decoder_layers: tuple[int, ...]
    kept_encoder_heads: tuple[tuple[int, ...], ...]
    kept_encoder_neurons: tuple[tuple[int, ...], ...]
    notes: dict = field(default_factory=dict, compare=False, hash=False)
    decoder_num_heads: int = 0
    decoder_ffn_dim: int = 0
    kept_decoder_heads: tuple[tuple[int, ...], ...] = ()
    kept_cross_heads: tuple[tuple[int, ...], ...] = ()
    kept_decoder_neurons: tuple[tuple[int, ...], ...] = ()
    hidden_size: int = 0
    kept_hidden_dims: tuple[int, ...] = ()
    quantization: str = "none"

    def __post_init__(self) -> None:
        # Normalise lists from JSON into tuples so plans compare and hash by value.
        object.__setattr__(self, "kept_decoder_layers", tuple(int(i) for i in self.kept_decoder_layers))
        object.__setattr__(self, "kept_encoder_heads", tuple(tuple(int(i) for i in h) for h in self.kept_encoder_heads))
        object.__setattr__(self, "kept_encoder_neurons", tuple(tuple(int(i) for i in n) for n in self.kept_encoder_neurons))
        for name in ("kept_decoder_heads", "kept_cross_heads", "kept_decoder_neurons"):
            object.__setattr__(self, name, tuple(tuple(int(i) for i in units) for units in getattr(self, name)))
        object.__setattr__(self, "kept_hidden_dims", tuple(int(i) for i in self.kept_hidden_dims))
        if self.quantization not in ("none", "int8"):
            raise ValueError(f"Unknown quantization {self.quantization!r} in the plan; use none or int8.")
        _check_indices("kept_decoder_layers", self.kept_decoder_layers, self.num_decoder_layers)
        if self.kept_hidden_dims:
            if self.hidden_size < 1:
                raise ValueError("kept_hidden_dims is given, so the plan needs hidden_size, the dense model's hidden size.")
            _check_indices("kept_hidden_dims", self.kept_hidden_dims, self.hidden_size)
        if self.num_decoder_layers > 0 and not self.kept_decoder_layers:
            raise ValueError("A plan must keep at least one decoder layer.")
        if len(self.kept_encoder_heads) != len(self.kept_encoder_neurons):
            raise ValueError(
                f"kept_encoder_heads has {len(self.kept_encoder_heads)} layers but kept_encoder_neurons has "
                f"{len(self.kept_encoder_neurons)}; they must describe the same encoder layers."
            )
        for i, heads in enumerate(self.kept_encoder_heads):
            _check_indices(f"kept_encoder_heads[{i}]", heads, self.num_heads)
        for i, neurons in enumerate(self.kept_encoder_neurons):
            _check_indices(f"kept_encoder_neurons[{i}]", neurons, self.ffn_dim)
        for name, upper in (("kept_decoder_heads", self.decoder_num_heads), ("kept_cross_heads", self.decoder_num_heads),
                            ("kept_decoder_neurons", self.decoder_ffn_dim)):
            per_layer = getattr(self, name)
            if not per_layer:
                continue
            if upper < 1:
                raise ValueError(f"{name} is given, so the plan needs decoder_num_heads and decoder_ffn_dim of the "
                                 f"dense decoder.")
            if len(per_layer) != self.num_decoder_layers:
                raise ValueError(f"{name} has {len(per_layer)} entries; give one per dense decoder layer "
                                 f"({self.num_decoder_layers}).")
            for i in self.kept_decoder_layers:
                _check_indices(f"{name}[{i}]", per_layer[i], upper)
                if not per_layer[i]:
                    raise ValueError(f"{name}[{i}] is empty: a kept decoder layer keeps at least one unit of each kind.")

    @property
    def num_encoder_layers(self) -> int:
        """Number of encoder layers the plan describes."""
        return len(self.kept_encoder_heads)

    @property
    def encoder_is_dense(self) -> bool:
        """True when every encoder head and FFN neuron is kept."""
        return all(len(h) == self.num_heads for h in self.kept_encoder_heads) and all(
            len(n) == self.ffn_dim for n in self.kept_encoder_neurons
        )

    @property
    def decoder_is_dense(self) -> bool:
        """True when every decoder layer is kept (whatever their widths)."""
        return len(self.kept_decoder_layers) == self.num_decoder_layers

    @property
    def narrows_decoder(self) -> bool:
        """True when the plan removes heads or FFN neurons inside kept decoder layers."""
        full = ((self.kept_decoder_heads, self.decoder_num_heads), (self.kept_cross_heads, self.decoder_num_heads),
                (self.kept_decoder_neurons, self.decoder_ffn_dim))
        return any(per_layer and any(len(per_layer[i]) < upper for i in self.kept_decoder_layers) for per_layer, upper in full)

    @property
    def narrows_hidden(self) -> bool:
        """True when the plan removes hidden dimensions."""
        return bool(self.kept_hidden_dims) and len(self.kept_hidden_dims) < self.hidden_size

    def describe(self) -> str:
        """One line a person can read, e.g. ``decoder 6 -> 2 layers, encoder heads 72 -> 50, FFN 9216 -> 6451``."""
        heads = sum(len(h) for h in self.kept_encoder_heads)
        neurons = sum(len(n) for n in self.kept_encoder_neurons)
        parts = []
        if self.num_decoder_layers:
            parts.append(f"decoder {self.num_decoder_layers} -> {len(self.kept_decoder_layers)} layers {list(self.kept_decoder_layers)}")
        if self.num_encoder_layers:  # a decoder-only LM's plan has no encoder (and no cross-attention)
            parts.append(f"encoder heads {self.num_heads * self.num_encoder_layers} -> {heads}")
            parts.append(f"FFN neurons {self.ffn_dim * self.num_encoder_layers} -> {neurons}")
        if self.narrows_decoder:
            k = len(self.kept_decoder_layers)
            blocks = (("self-attention heads", self.kept_decoder_heads, self.decoder_num_heads),
                      ("cross-attention heads", self.kept_cross_heads, self.decoder_num_heads),
                      ("FFN neurons", self.kept_decoder_neurons, self.decoder_ffn_dim))
            for label, per_layer, upper in blocks:
                if label.startswith("cross") and not self.num_encoder_layers:
                    continue
                kept = sum(len(per_layer[i]) for i in self.kept_decoder_layers) if per_layer else upper * k
                parts.append(f"decoder {label} {upper * k} -> {kept}")
        if self.narrows_hidden:
            parts.append(f"hidden {self.hidden_size} -> {len(self.kept_hidden_dims)}")
        if self.quantization != "none":
            parts.append(f"{self.quantization} Linear weights")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (lists, ints, str) with a format version."""
        data = asdict(self)
        data["format_version"] = PLAN_FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PruningPlan":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: If fields are missing or of the wrong type.
        """
        data = dict(data)
        version = data.pop("format_version", PLAN_FORMAT_VERSION)
        if version not in range(1, PLAN_FORMAT_VERSION + 1):
            raise ValueError(f"Unsupported plan format version {version}; this code reads versions 1 to "
                             f"{PLAN_FORMAT_VERSION}.")
        if version < 5:
            data = {_OLD_FIELD_NAMES.get(key, key): value for key, value in data.items()}
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"Malformed pruning plan: {err}") from err

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``plan.json`` into ``directory`` (atomically: temp file + rename)."""
        path = Path(directory) / PLAN_FILE
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, directory_or_file: str | os.PathLike) -> "PruningPlan":
        """Read a plan from a ``plan.json`` file or a folder holding one.

        Raises:
            FileNotFoundError: If there is no plan there.
            ValueError: If the file is not a valid plan.
        """
        path = Path(directory_or_file)
        if path.is_dir():
            path = path / PLAN_FILE
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(data)


def _check_indices(name: str, indices: tuple[int, ...], upper: int) -> None:
    if any(i < 0 or i >= upper for i in indices):
        raise ValueError(f"{name} has indices outside [0, {upper}): {list(indices)}")
    if any(b <= a for a, b in zip(indices, indices[1:])):
        raise ValueError(f"{name} must be strictly increasing without repeats: {list(indices)}")
