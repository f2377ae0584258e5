"""Dataset factory: onboarding specs, pairing and checks, splits, statistics."""

from .onboard import onboard, run

__all__ = ["onboard", "run"]
