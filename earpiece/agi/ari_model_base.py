"""The parsing machinery behind the ARI dataclasses of :mod:`earpiece.agi.ari_models`.

:class:`AriModel` builds a typed ``parse`` from the field annotations of each dataclass, using
the JSON converters here (Swagger type -> Python type, see :mod:`earpiece.agi.ari_models`);
:func:`parse_list` parses a JSON array of one model. No I/O.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from earpiece.errors import AriProtocolError

M = TypeVar("M", bound="AriModel")

# A converter checks one JSON value and returns the typed value; ``where`` is the dotted path.
_Conv = Callable[[object, str], object]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _fail(where: str, expected: str, value: object) -> AriProtocolError:
    return AriProtocolError(f"{where}: expected {expected}, got {_json_type(value)}")


def _conv_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "string", value)
    return value


def _conv_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "integer", value)
    return value


def _conv_float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, "number", value)
    try:
        return float(value)
    except OverflowError:
        raise AriProtocolError(f"{where}: number out of range") from None


def _conv_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "boolean", value)
    return value


def _conv_date(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(where, "date string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AriProtocolError(f"{where}: invalid date {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _conv_any_dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, "object", value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise AriProtocolError(f"{where}: object key must be a string")
        out[key] = item
    return out


def _conv_any(value: object, where: str) -> object:
    return value


def _make_tuple_conv(item: _Conv) -> _Conv:
    def conv(value: object, where: str) -> tuple[object, ...]:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, "array", value)
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return conv


def _make_dict_conv(item: _Conv) -> _Conv:
    def conv(value: object, where: str) -> dict[str, object]:
        if not isinstance(value, Mapping):
            raise _fail(where, "object", value)
        out: dict[str, object] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise AriProtocolError(f"{where}: object key must be a string")
            out[key] = item(v, f"{where}.{key}")
        return out

    return conv


def _make_model_conv(cls: type[AriModel]) -> _Conv:
    def conv(value: object, where: str) -> AriModel:
        return cls._parse_at(value, where)

    return conv


def _converter(hint: object, owner: type) -> _Conv:
    """The converter for one resolved type hint (the supported subset only)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{owner.__name__}: unsupported union {hint!r}")
        return _converter(rest[0], owner)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{owner.__name__}: only tuple[X, ...] is supported")
        return _make_tuple_conv(_converter(args[0], owner))
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"{owner.__name__}: dict keys must be str")
        if args[1] is Any:
            return _conv_any_dict
        return _make_dict_conv(_converter(args[1], owner))
    if hint is Any:
        return _conv_any
    if hint is str:
        return _conv_str
    if hint is bool:
        return _conv_bool
    if hint is int:
        return _conv_int
    if hint is float:
        return _conv_float
    if hint is datetime:
        return _conv_date
    if isinstance(hint, type) and issubclass(hint, AriModel):
        return _make_model_conv(hint)
    raise TypeError(f"{owner.__name__}: unsupported field type {hint!r}")


@dataclass(frozen=True)
class _FieldSpec:
    attr: str
    key: str
    required: bool
    conv: _Conv


class AriModel:
    """Base of every ARI dataclass: a typed ``parse`` built from the field annotations."""

    __slots__ = ()
    _specs: ClassVar[dict[type, tuple[_FieldSpec, ...]]] = {}

    @classmethod
    def _field_specs(cls) -> tuple[_FieldSpec, ...]:
        specs = AriModel._specs.get(cls)
        if specs is None:
            hints = typing.get_type_hints(cls)
            built = []
            for f in fields(cls):  # type: ignore[arg-type]
                if f.metadata.get("raw"):
                    continue
                required = f.default is MISSING and f.default_factory is MISSING
                key = str(f.metadata.get("json", f.name))
                built.append(_FieldSpec(f.name, key, required, _converter(hints[f.name], cls)))
            specs = tuple(built)
            AriModel._specs[cls] = specs
        return specs

    @classmethod
    def json_keys(cls) -> dict[str, str]:
        """JSON property name -> Python attribute name, for every parsed field."""
        return {s.key: s.attr for s in cls._field_specs()}

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> Self:
        """Build from one decoded JSON object; :class:`AriProtocolError` on bad input."""
        return cls._parse_at(obj, cls.__name__)

    @classmethod
    def _parse_at(cls, obj: object, where: str) -> Self:
        if not isinstance(obj, Mapping):
            raise _fail(where, "object", obj)
        kwargs: dict[str, object] = {}
        for spec in cls._field_specs():
            value = obj.get(spec.key)
            if value is None:
                if spec.required:
                    present = "null" if spec.key in obj else "missing"
                    raise AriProtocolError(f"{where}: {present} required field {spec.key!r}")
                continue
            kwargs[spec.attr] = spec.conv(value, f"{where}.{spec.key}")
        cls._check(obj, kwargs, where)
        return cls(**kwargs)

    @classmethod
    def _check(cls, obj: Mapping[Any, Any], kwargs: dict[str, object], where: str) -> None:
        """Hook for extra checks and derived fields; the base does nothing."""


def parse_list(cls: type[M], obj: object, where: str | None = None) -> list[M]:
    """Parse a JSON array of ``cls`` objects (a ``List[...]`` REST body)."""
    name = where if where is not None else f"List[{cls.__name__}]"
    if not isinstance(obj, (list, tuple)):
        raise _fail(name, "array", obj)
    return [cls._parse_at(item, f"{name}[{i}]") for i, item in enumerate(obj)]
