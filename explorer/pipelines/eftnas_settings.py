"""The settings of one EFTNAS run (``explorer.pipelines.eftnas``), JSON in and out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from dataclasses import asdict, dataclass

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EftnasSettings:
    """One EFTNAS run. Defaults are sized for a CPU in minutes; ``scripts/eftnas_glue.sh`` sets the
    full-data runs (every training example, epochs).

    Attributes:
        model: ``minilm`` (offline), a local Hugging Face folder, or ``random:<config folder>``
            (random weights: for tests and timing only, never quality).
        task: A GLUE classification task or STS-B (regression), or ``rotten_tomatoes`` offline.
        data_dir: Local data root (e.g. ``../shared/data``); None: offline default or the Hub.
        train_samples: Training examples used (None: all but the search examples).
        eval_samples: Examples the reported metric is computed on (None: the whole split).
        search_samples: Examples the search ranks subnetworks on: the validation split when the task
            reports on test (rotten_tomatoes), else training examples held out of every training
            stage, so the reported metric never selected a subnetwork. None: 10% of the training
            split, at least 250 and at most 1000.
        max_tokens: Input truncation, tokens.
        finetune_steps, movement_steps, supernet_steps: Optimizer steps of each training stage;
        finetune_epochs, movement_epochs, supernet_epochs: when set, they replace the steps
            (epochs x training examples / batch size, rounded up).
        stages: Progressive-shrinking stages of the super-network training.
        batch_size: Training batch size; ``learning_rate``: the dense fine-tune's;
            ``supernet_learning_rate``: the super-network's.
        save_steps: Checkpoint interval of the training stages (resumable runs).
        keep_best_epoch: With ``finetune_epochs``, keep the dense weights of the epoch with the best
            metric on the held-out search examples (early stopping; the reported split never chooses).
        targets: MACs targets (fractions of dense) of the search-space generator.
        population, generations: NSGA-II.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Everything random.
    """

    model: str = "minilm"
    task: str = "rotten_tomatoes"
    data_dir: str | None = None
    train_samples: int | None = 2000
    eval_samples: int | None = 500
    search_samples: int | None = 300
    max_tokens: int = 128
    finetune_steps: int = 300
    movement_steps: int = 200
    supernet_steps: int = 300
    finetune_epochs: float | None = None
    movement_epochs: float | None = None
    supernet_epochs: float | None = None
    stages: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    supernet_learning_rate: float = 5e-5
    save_steps: int = 500
    keep_best_epoch: bool = False
    targets: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    population: int = 16
    generations: int = 8
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("finetune_steps", "movement_steps", "supernet_steps", "batch_size", "max_tokens", "stages",
                     "save_steps", "population", "generations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("finetune_epochs", "movement_epochs", "supernet_epochs"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.data_dir is not None and Path(self.data_dir).expanduser().is_file():
            raise ValueError(f"data_dir {self.data_dir} is one file; EFTNAS trains, searches and evaluates, so give the "
                             f"folder that holds the task's train and evaluation files.")
        if self.population < 2:
            raise ValueError(f"population must be at least 2 (NSGA-II selects parents by binary tournament), got "
                             f"{self.population}.")
        if self.search_samples is not None and self.search_samples < 1:
            raise ValueError("search_samples must be at least 1.")
        if self.learning_rate <= 0 or self.supernet_learning_rate <= 0:
            raise ValueError("Learning rates must be positive.")
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))

    def to_json(self) -> str:
        """Every setting as one JSON document (:meth:`from_json` reads it back)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EftnasSettings:
        """Settings from :meth:`to_json`.

        Raises:
            ValueError: For malformed JSON, unknown keys or invalid values.
        """
        try:
            data = json.loads(text)
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"Malformed EFTNAS settings: {err}") from err

    def steps(self, stage: str, train_examples: int) -> int:
        """Optimizer steps of ``stage`` (``finetune``, ``movement``, ``supernet``) for a training set
        of ``train_examples``."""
        epochs = getattr(self, f"{stage}_epochs")
        if epochs is None:
            return getattr(self, f"{stage}_steps")
        return max(1, math.ceil(epochs * train_examples / self.batch_size))
