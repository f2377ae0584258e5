"""A template parameter's allowed range in words, from its JSON Schema keywords.

Standard library only: the engine's parameter checks (tuning/render.py) and the Fine-tuning dock's form
(parameter_rules.py, QGIS side) say a range the same way because both read it from here.
"""

from __future__ import annotations

from typing import Any, Mapping


def allowed_text(prop: Mapping[str, Any]) -> str:
    """A numeric property's range in words: "1 to 1024", "more than 0 and at most 10", "0 (off), or 32 to 8192"."""
    low = ("", prop["minimum"]) if "minimum" in prop else ("more than ", prop["exclusiveMinimum"]) \
        if "exclusiveMinimum" in prop else None
    high = ("", prop["maximum"]) if "maximum" in prop else ("less than ", prop["exclusiveMaximum"]) \
        if "exclusiveMaximum" in prop else None
    if low and high and not low[0] and not high[0]:
        text = f"{low[1]} to {high[1]}"
    else:
        text = " and ".join(([f"{low[0] or 'at least '}{low[1]}"] if low else [])
                            + ([f"{high[0] or 'at most '}{high[1]}"] if high else [])) or "any value"
    return f"{prop['offValue']} (off), or {text}" if "offValue" in prop else text
