"""Overrides of dataclass defaults (an editor's hparams, a training config), parsed and typed in one place.

    >>> parse_pairs(["steps=10", "layers=[-1,-2]", "site=ffn_out"])
    {'steps': 10, 'layers': [-1, -2], 'site': 'ffn_out'}
    >>> typed("ft-last", {"sites": ("layer",), "lr": 3e-3}, {"sites": ["ffn_out"], "lr": 1})
    {'sites': ('ffn_out',), 'lr': 1.0}

`parse_pairs` reads the command line's KEY=VALUE (a JSON value, else the text); `typed` checks each value against
the default's type and converts what converts without loss (an int for a float, a list for a tuple, a one-element
value for a tuple); anything else is a ValueError naming the owner, the field and what it takes. Used by
`editors.registry.make_hparams` (the hparams files, `--set`, Python overrides), `train-backbone --set` and
`notebooks --param`.
"""
from __future__ import annotations

import dataclasses
import json


def parse_pairs(pairs: list[str], flag: str = "--set") -> dict:
    """`["steps=10", "layers=[-1,-2]"]` -> {"steps": 10, "layers": [-1, -2]} (JSON values, else the text)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def defaults_of(cls) -> dict:
    """field -> default of dataclass `cls` (or of an instance)."""
    instance = cls() if isinstance(cls, type) else cls
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coerce(owner: str, key: str, default, value):
    """`value` as the type of `default` (ValueError when it is not one)."""
    if isinstance(default, tuple):
        items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        kinds = {type(v) for v in default}
        if kinds and not all(type(v) in kinds for v in items):
            raise ValueError(f"{owner}.{key} takes a list of {'/'.join(sorted(k.__name__ for k in kinds))}, "
                             f"got {value!r}")
        return items
    if default is None:  # an optional limit: an integer, or null for none
        if value is None or _is_int(value):
            return value
        raise ValueError(f"{owner}.{key} takes an integer or null, got {value!r}")
    if isinstance(default, float) and _is_int(value):
        return float(value)
    if type(default) is not type(value):
        raise ValueError(f"{owner}.{key} takes {type(default).__name__}, got {value!r}")
    return value


def typed(owner: str, defaults: dict, values: dict, what: str = "hparam") -> dict:
    """`values` checked against `defaults` (field -> default) and converted (ValueError naming unknown fields)."""
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ValueError(f"{owner} has no {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    return {key: coerce(owner, key, defaults[key], value) for key, value in values.items()}


def typed_pairs(owner: str, defaults: dict, pairs: list[str], flag: str = "--set", what: str = "field") -> dict:
    """KEY=VALUE pairs typed against `defaults`; a text field keeps the text as written (`name=123` is "123")."""
    values = parse_pairs(pairs, flag)
    raw = {pair.partition("=")[0]: pair.partition("=")[2] for pair in pairs}
    values = {k: raw[k] if isinstance(defaults.get(k), str) else v for k, v in values.items()}
    return typed(owner, defaults, values, what)
