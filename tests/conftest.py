import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NNCF_TORCH_LEGACY_TRACING", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared"
T5_TOKENIZER = SHARED / "models" / "t5-small"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh project cache (fine-tunes, tokenized data) per test: ``EXPLORER_CACHE`` under tmp_path."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    """A tiny T5 (random weights) with the real t5-small tokenizer, as a save_pretrained folder."""
    from tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), T5_TOKENIZER)
