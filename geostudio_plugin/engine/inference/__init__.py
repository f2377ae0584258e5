"""Inference: run a tuned model over GeoTIFFs and keep georeferenced predictions with their styles."""

from .infer import infer, run

__all__ = ["infer", "run"]
