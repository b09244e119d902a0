"""Measuring models: task metrics, generation quality, latency, MACs and bytes."""
