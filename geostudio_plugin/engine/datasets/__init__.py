"""Dataset factory: onboarding specs, pairing and checks, splits, statistics.

Nothing is imported here, so validating an onboarding spec (``datasets.spec``) does not pay for
rasterio and numpy; the command is ``datasets.onboard:run`` (engine/commands.py).
"""
