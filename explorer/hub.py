"""Is the Hugging Face Hub usable? One answer for models and datasets alike."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUE = ("1", "true", "yes", "on")


def offline_mode() -> bool:
    """True when the user switched the Hub off (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``);
    the libraries may still serve what is in their local cache."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_is_reachable(timeout_s: float = 3.0) -> bool:
    """False in offline mode or when the Hub endpoint (``HF_ENDPOINT``) cannot be reached
    by TCP within ``timeout_s`` seconds; no request is sent."""
    if offline_mode():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
