"""Dataset factory: onboarding specs, pairing and checks, splits, statistics."""

from .onboard import run

__all__ = ["run"]
