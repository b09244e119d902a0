"""Subnetworks you can ship, as ONNX (EFTNAS issue, item 6): export an extracted subnetwork with
``torch.onnx.export`` (the dynamo exporter, batch and sequence length dynamic) and check it against
PyTorch with onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from pruning.atomic import atomic_write


def export_onnx(model: nn.Module, path: str | os.PathLike, *, seq_len: int = 128) -> Path:
    """Write ``model`` (a sequence classifier: ``input_ids``, ``attention_mask`` (B, T) -> ``logits``
    (B, C)) as one ONNX file with its weights inside, atomically.

    Raises:
        RuntimeError: If the exporter fails (its message is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    ids = torch.randint(1000, 2000, (2, seq_len)) % model.config.vocab_size
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    return atomic_write(path, lambda tmp: torch.onnx.export(
        model, (), tmp, kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamo=True,
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        external_data=False, verbose=False))


def onnx_parity(model: nn.Module, path: str | os.PathLike, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> float:
    """Largest absolute difference between the logits of ``model`` and of the ONNX file run by
    onnxruntime (CPU) on the same (B, T) inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
    with torch.inference_mode():
        reference = model.cpu().eval()(input_ids=input_ids, attention_mask=attention_mask).logits
    return float((torch.from_numpy(logits) - reference).abs().max())
