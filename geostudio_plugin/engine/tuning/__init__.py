"""Fine-tuning: render a template against a dataset and a backbone, train with TerraTorch, keep the package."""

from .tune import run, tune

__all__ = ["run", "tune"]
