"""Benchmark harness for offline-to-online RL from pixels (MOTO and its baselines)."""

__version__ = "0.1.0"
