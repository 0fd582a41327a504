"""Config sections declared once as pydantic models, validated with messages that name the
dotted setting (``training.max_steps must be int, not 'many'``).

A settings section (``[training]``, ``[instructions]``, ...) is a pydantic model whose
fields carry the types, defaults and ranges (``Field(ge=1)``); the model is the only place
a setting is declared. This module turns that declaration into config-file behaviour:

* `parse_overrides(args, error_cls)`: spaCy-style ``--section.key value`` CLI overrides.
* `check_override_keys(raw_config, overrides, known_keys, error_cls)`: refuse an override
  of a setting that exists neither in the file nor in a model ("Did you mean ..." hint).
* `section_keys(section, model_cls)`: the dotted names a model declares (for the above).
* `validate_section(section, model_cls, values, error_cls)`: build the model from a config
  section; a pydantic `ValidationError` becomes ``error_cls("section.key must be ...")``.
* `did_you_mean(key, candidates)`: the difflib hint used in those messages.

Models are expected to use ``model_config = SETTINGS_MODEL_CONFIG`` (or at least
``extra="forbid", strict=True``): strict so that ``"3"`` is not silently an int and ``1``
not a bool, as a config file should be read. How errors read:

* unknown key: ``Unknown setting 'training.max_stepz' in [training]. Did you mean 'max_steps'?``
* wrong type: ``training.max_steps must be int, not 'many'`` (a float field says
  ``int or float``, a nullable one ``... or null``, a Literal lists its values);
* out of range (from ``ge/gt/le/lt``): ``training.max_length must be >= 8``,
  ``training.warmup_ratio must be in [0, 1)`` (``or null`` when None is allowed);
* a ``ValueError("must be ...")`` raised by a field validator: ``section.key must be ...``;
  one raised by a model validator (no field) is used as the whole message, so it should
  name the settings itself;
* a missing required field: ``section.key is required``.

Imports nothing of this package but `util`; only pydantic and spaCy's config parsing.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError

# The model_config of a settings section: unknown keys refused, no type coercion, frozen.
SETTINGS_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)

ModelT = TypeVar("ModelT", bound=BaseModel)
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


class SettingsError(ValueError):
    """A config setting or override is invalid (the default `error_cls` of this module)."""


def did_you_mean(key: str, candidates: Iterable[str], n: int = 3) -> str:
    """``" Did you mean 'a' or 'b'?"`` for the close matches of `key`, else ``""``."""
    close = difflib.get_close_matches(key, sorted(candidates), n=n)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def parse_overrides(
    args: Sequence[str], error_cls: type[Exception] = SettingsError
) -> dict[str, Any]:
    """spaCy-style CLI overrides: ``["--training.max_steps", "3"]`` → ``{"training.max_steps": 3}``.

    Values are parsed as JSON where possible (numbers, booleans, null, lists), else kept as
    strings; `SPACY_CONFIG_OVERRIDES` is honoured as in spaCy. Malformed arguments raise
    `error_cls` instead of exiting the process (as spaCy's helper does).
    """
    from spacy.cli._util import parse_config_overrides

    try:
        return parse_config_overrides(list(args))
    except SystemExit as err:  # wasabi's msg.fail exits; turn it into an exception
        raise error_cls(
            f"Could not parse config overrides {list(args)!r}: use '--section.key value' "
            "(e.g. --training.max_steps 3)"
        ) from err


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as one dict of dotted keys: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def section_keys(section: str, model_cls: type[BaseModel]) -> set[str]:
    """The dotted names of the settings `model_cls` declares: ``{"training.seed", ...}``."""
    return {f"{section}.{name}" for name in model_cls.model_fields}


def check_override_keys(
    raw_config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    known_keys: Collection[str] = (),
    error_cls: type[Exception] = SettingsError,
) -> None:
    """Refuse an override key that names no setting.

    A key is known when the (uninterpolated) `raw_config` has it, or it is in `known_keys`
    (settings with defaults may be overridden although the file leaves them out; pass
    `section_keys(...)` of the models). Raises `error_cls` with a "Did you mean" hint.
    """
    known = set(flatten(raw_config)) | set(known_keys)
    for key in overrides:
        if key not in known:
            raise error_cls(
                f"Unknown config override {key!r}: no such setting.{did_you_mean(key, known)}"
            )


def validate_section(
    section: str,
    model_cls: type[ModelT],
    values: Mapping[str, Any],
    error_cls: type[Exception] = SettingsError,
) -> ModelT:
    """Build `model_cls` from the config section `section` (its dotted name, for messages).

    Unknown keys are refused first (with the close field names as a hint), then the
    model validates; its first error is raised as `error_cls` (see the module docstring
    for how each kind of error reads).
    """
    names = list(model_cls.model_fields)
    for key in values:
        if key not in names:
            hint = did_you_mean(key, names, n=2)
            raise error_cls(f"Unknown setting {f'{section}.{key}'!r} in [{section}].{hint}")
    try:
        return model_cls.model_validate(dict(values))
    except ValidationError as err:
        raise error_cls(describe_error(section, model_cls, err.errors()[0])) from None


def describe_error(section: str, model_cls: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One pydantic error dict (from `ValidationError.errors()`) as a config message."""
    loc = error.get("loc") or ()
    kind = error.get("type", "")
    if kind in ("value_error", "assertion_error"):
        message = str(error.get("ctx", {}).get("error", error.get("msg", "")))
        return f"{section}.{loc[0]} {message}" if loc else message
    if not loc:
        return f"[{section}]: {error.get('msg', kind)}"
    key = str(loc[0])
    dotted = f"{section}.{key}"
    field = model_cls.model_fields.get(key)
    if kind == "extra_forbidden" or field is None:
        hint = did_you_mean(key, model_cls.model_fields, n=2)
        return f"Unknown setting {dotted!r} in [{section}].{hint}"
    if kind == "missing":
        return f"{dotted} is required"
    kinds = type_names(field.annotation)
    if kind in _BOUND_ERRORS:
        nullable = " or null" if "null" in kinds else ""
        return f"{dotted} must be {_bounds(field.metadata) or error.get('msg')}{nullable}"
    return f"{dotted} must be {' or '.join(kinds)}, not {error.get('input')!r}"


def type_names(annotation: Any) -> list[str]:
    """How a field type reads in a message: int → ["int"], float → ["int", "float"] (strict
    floats take ints), ``str | None`` → ["str", "null"], ``Literal["a"]`` → ['"a"']."""
    origin = get_origin(annotation)
    if origin is Annotated:
        names = type_names(get_args(annotation)[0])
    elif origin in (Union, types.UnionType):
        names = [name for arg in get_args(annotation) for name in type_names(arg)]
    elif origin is Literal:
        names = [json.dumps(value) for value in get_args(annotation)]
    elif annotation is type(None):
        names = ["null"]
    elif annotation is float:
        names = ["int", "float"]
    elif origin in (list, tuple, set, frozenset, Sequence) or annotation in (list, tuple):
        names = ["list"]
    elif origin in (dict, Mapping) or annotation is dict:
        names = ["a section"]
    else:
        names = [getattr(annotation, "__name__", str(annotation))]
    return list(dict.fromkeys(names))


def _bounds(metadata: Sequence[Any]) -> str:
    """``">= 1"``, ``"< 1"`` or ``"in [0, 1)"`` from a field's ge/gt/le/lt constraints."""
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = ("[", ">=", item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = ("(", ">", item.gt)
        elif isinstance(item, annotated_types.Le):
            high = ("]", "<=", item.le)
        elif isinstance(item, annotated_types.Lt):
            high = (")", "<", item.lt)
    if low and high:
        return f"in {low[0]}{low[2]}, {high[2]}{high[0]}"
    if low or high:
        _, op, value = low or high  # type: ignore[misc]
        return f"{op} {value}"
    return ""


__all__ = [
    "SETTINGS_MODEL_CONFIG",
    "SettingsError",
    "check_override_keys",
    "describe_error",
    "did_you_mean",
    "flatten",
    "parse_overrides",
    "section_keys",
    "type_names",
    "validate_section",
]
