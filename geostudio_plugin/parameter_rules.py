"""A template's parameter schema, read on the QGIS side: defaults, labels, allowed values and the checks.

Standard library only. The rules are the engine's (``engine/tuning/render.py``: ``merge_parameters``,
``_coerce``, ``allowed_text``), read from the same schema keywords (``type``, ``enum``, ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``offValue``, ``maximumParameter``), so the Fine-tuning
dock can flag a value before Start; nothing here names a parameter. The engine checks again when the tune starts,
and a QGIS test runs both over every template's parameters (tests/qgis/test_tuning_dock_form.py).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterator, Mapping, Optional

from .engine.schema_words import allowed_text  # the engine's wording, one copy

LEAF_TYPES = ("integer", "number", "boolean", "string")


def leaves(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, property) of every leaf parameter, in the schema's order."""
    for key, prop in (schema.get("properties") or {}).items():
        if prop.get("type") == "object":
            yield from leaves(prop, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", prop


def defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The nested defaults (as the engine's ``schema_defaults``)."""
    out: dict[str, Any] = {}
    for key, prop in (schema.get("properties") or {}).items():
        if prop.get("type") == "object":
            out[key] = defaults(prop)
        elif "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
    return out


def label(path: str, prop: Mapping[str, Any]) -> str:
    """The Studio's label (``studio_name``), else the key in words."""
    return str(prop.get("studio_name") or humanise(path.rsplit(".", 1)[-1]))


def humanise(key: str) -> str:
    words = key.replace("_", " ").split()
    text = " ".join(w.upper() if w.lower() in ("lr", "gpu", "id") else w for w in words)
    return text[:1].upper() + text[1:]


def shown(value: Any) -> str:
    """A value as a field or a message shows it: 6e-05, 0.001, 1 (not 1.0), true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def allowed(prop: Mapping[str, Any]) -> str:
    """What a field takes, for its tooltip and its message: the choices, the range, or the kind."""
    if "enum" in prop:
        return "one of " + ", ".join(map(str, prop["enum"]))
    kind = prop.get("type")
    if kind in ("integer", "number"):
        return ("a whole number, " if kind == "integer" else "a number, ") + allowed_text(prop)
    if kind == "boolean":
        return "true or false"
    return "any text"


def coerce(value: Any, prop: Mapping[str, Any]) -> Any:
    """The value as the engine reads it (numbers may arrive as text, "6e-05"); ValueError when it is not of the
    property's type. Range and choices are ``problem``'s."""
    kind = prop.get("type")
    if kind in ("integer", "number") and isinstance(value, bool):
        raise ValueError(f"not a {kind}")
    try:
        if kind == "integer":
            if isinstance(value, str):
                value = float(value.strip())
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "number":
            number = float(value.strip() if isinstance(value, str) else value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == "boolean":
            if isinstance(value, str):
                if value.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.strip().lower() in ("true", "1")
            return bool(value)
        if isinstance(value, (dict, list, bool)) or value is None:
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"not a {'finite number' if kind == 'number' else kind}") from None


def problem(path: str, prop: Mapping[str, Any], value: Any) -> str:
    """Why ``value`` is not allowed for the parameter at ``path`` (naming it and what it takes), or ""."""
    name = f"{label(path, prop)} ({path})"
    try:
        value = coerce(value, prop)
    except ValueError as exc:
        return f"{name}: {shown(value)!s} is {exc}; it takes {allowed(prop)}."
    if "enum" in prop and value not in prop["enum"]:
        return f"{name}: {shown(value)} is not allowed; use {allowed(prop)}."
    if prop.get("type") in ("integer", "number") and value != prop.get("offValue", object()):
        low, high = prop.get("minimum", prop.get("exclusiveMinimum")), prop.get("maximum", prop.get("exclusiveMaximum"))
        below = low is not None and (value <= low if "exclusiveMinimum" in prop else value < low)
        above = high is not None and (value >= high if "exclusiveMaximum" in prop else value > high)
        if below or above:
            return f"{name}: {shown(value)} is out of range; allowed: {allowed_text(prop)}."
    return ""


def sibling_problems(schema: Mapping[str, Any], values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``maximumParameter``: a value that must not exceed a sibling's (a tile's stride, its size). ``values`` maps
    dotted paths to coerced values; the result maps the offending path to its message."""
    out: dict[str, str] = {}
    for key, prop in (schema.get("properties") or {}).items():
        if prop.get("type") == "object":
            out.update(sibling_problems(prop, values, f"{prefix}{key}."))
            continue
        other = prop.get("maximumParameter")
        mine, theirs = values.get(f"{prefix}{key}"), values.get(f"{prefix}{other}")
        if other and isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) and mine > theirs:
            other_prop = (schema.get("properties") or {}).get(other, {})
            out[f"{prefix}{key}"] = (f"{label(prefix + key, prop)} ({prefix}{key}): {shown(mine)} is larger than "
                                     f"{label(prefix + other, other_prop)} ({shown(theirs)}); give at most "
                                     f"{shown(theirs)}.")
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"optimizer.lr": 1e-4} -> {"optimizer": {"lr": 1e-4}}."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *groups, key = path.split(".")
        node = out
        for group in groups:
            node = node.setdefault(group, {})
        node[key] = value
    return out


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The reverse of ``nest``: {"optimizer": {"lr": 1e-4}} -> {"optimizer.lr": 1e-4}."""
    out: dict[str, Any] = {}
    for key, value in (nested or {}).items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def find(schema: Mapping[str, Any], path: str) -> Optional[dict[str, Any]]:
    """The leaf property at a dotted path, or None."""
    node: Any = schema
    for key in path.split("."):
        node = (node.get("properties") or {}).get(key) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return None if node.get("type") == "object" else dict(node)
