"""Retriever parameters typed by the factory's own signature: command-line text is parsed to the
annotated type, Python values are checked against it, and an unknown name is refused with the
accepted ones. Nested parameters (``inner.tokenizer=kiwi``) are typed by the retriever they go to."""
from __future__ import annotations

import dataclasses
import inspect
import numbers
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from ..errors import OdqaBenchError

__all__ = ["ParamInfo", "REQUIRED", "check_params", "describe_type", "factory_params", "guess_value", "parse_params",
           "parse_value"]

# ``resolve(name)``: the factory registered under ``name``, or None when there is none
Resolver = Callable[[str], "Callable[..., Any] | None"]


class _Required:
    def __repr__(self) -> str:
        return "(required)"


REQUIRED: Any = _Required()
_NONE_WORDS = ("none", "null")
_MAPPING = "mapping"
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False, "1": True, "0": False}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter a factory takes by name: its annotation (``Any`` when it has none) and
    default (:data:`REQUIRED` when it has none)."""

    name: str
    annotation: Any
    default: Any

    @property
    def type_name(self) -> str:
        return describe_type(self.annotation)


@dataclass(frozen=True)
class FactoryParams:
    """The public parameters of a factory, and whether it passes other keywords on (``**kw``)."""

    params: dict[str, ParamInfo]
    passes_others: bool
    others_name: str = ""

    def accepted(self) -> list[str]:
        return sorted(self.params)

    def nested_head(self, name: str) -> str | None:
        """The ``head`` of ``head.key=value`` that fills parameter ``name``, if it takes one."""
        head = name.removesuffix("_params")
        if head != name and head in self.params:
            return head
        return name if _is_mapping(self.params[name].annotation) else None


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    for target in (factory.__init__, factory) if inspect.isclass(factory) else (factory,):
        try:
            return typing.get_type_hints(target)
        except Exception:  # an annotation that does not resolve leaves that factory untyped, not broken
            continue
    return {}


def _default(factory: Callable[..., Any], p: inspect.Parameter) -> Any:
    if p.default is inspect.Parameter.empty:
        return REQUIRED
    if p.default is dataclasses.MISSING or repr(p.default) == "<factory>":
        fields = {f.name: f for f in dataclasses.fields(factory)} if dataclasses.is_dataclass(factory) else {}
        f = fields.get(p.name)
        if f is not None and f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
    return p.default


def factory_params(factory: Callable[..., Any]) -> FactoryParams:
    """The parameters ``factory`` takes by name (those starting with ``_`` are private and left out)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return FactoryParams({}, True, "kwargs")
    hints = _hints(factory)
    params: dict[str, ParamInfo] = {}
    others = ""
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            others = p.name
        elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and not p.name.startswith("_"):
            params[p.name] = ParamInfo(p.name, hints.get(p.name, Any), _default(factory, p))
    return FactoryParams(params, bool(others), others)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def describe_type(tp: Any) -> str:
    """``float``, ``int or None``, ``one of 'a', 'b'``: how a type reads in a message or a listing."""
    if tp is Any:
        return "any"
    if tp is type(None) or tp is None:
        return "None"
    if _is_union(tp):
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def guess_value(text: str) -> Any:
    """Text for a parameter of unknown type (one passed on through ``**kw``): bool, None, int or
    float where it reads as one, else the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in _NONE_WORDS:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Unparsable(Exception):
    """Text that does not read as the type; ``hint`` says what to write instead, when known."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


def parse_value(text: str, tp: Any) -> Any:
    """Command-line ``text`` as type ``tp`` (``int``, ``float | None``, a ``Literal`` ...);
    ``ValueError`` naming the expected type when it cannot be."""
    try:
        return _parse(text, tp)
    except _Unparsable as exc:
        raise ValueError(f"expects {describe_type(tp)}, got {text!r}" + (f" ({exc.hint})" if exc.hint else "")) from None


def _parse(text: str, tp: Any) -> Any:
    if tp is Any:
        return guess_value(text)
    if tp is type(None):
        if text.lower() in _NONE_WORDS:
            return None
        raise _Unparsable()
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in _NONE_WORDS:
            return None
        hint = ""
        for a in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):  # "3" for int | str is 3
            try:
                return _parse(text, a)
            except _Unparsable as exc:
                hint = hint or exc.hint
        raise _Unparsable(hint)
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == text or (isinstance(choice, bool) and _BOOL_WORDS.get(text.lower()) is choice):
                return choice
        raise _Unparsable()
    if tp is bool:
        if text.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[text.lower()]
        raise _Unparsable()
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise _Unparsable() from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise _Unparsable() from None
    if tp is str:
        return text
    if tp is Path or (inspect.isclass(tp) and issubclass(tp, os.PathLike)):
        return Path(text)
    if _is_mapping(tp):
        raise _Unparsable(_MAPPING)
    raise _Unparsable("not settable on the command line")


def _is_mapping(tp: Any) -> bool:
    if _is_union(tp):
        return any(_is_mapping(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp) or tp
    return inspect.isclass(origin) and issubclass(origin, Mapping)


def _fits(value: Any, tp: Any) -> bool:
    """Whether a Python value fits the annotation. Only types we can name are checked; other
    classes (an encoder, a dataset) are taken as given, so duck-typed objects still work."""
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    if _is_union(tp):
        return any(_fits(value, a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if tp is str:
        return isinstance(value, str)
    if tp is Path:
        return isinstance(value, (str, os.PathLike))
    base = origin or tp
    if inspect.isclass(base) and issubclass(base, Mapping):
        return isinstance(value, Mapping)
    if base in (list, tuple, set, frozenset):
        return isinstance(value, (list, tuple, set, frozenset))
    return True


def _bad_value(top: str, path: str, p: ParamInfo, value: Any, hint: str = "") -> OdqaBenchError:
    extra = f" ({hint})" if hint else ""
    return OdqaBenchError(f"retriever {top!r}: parameter {path}{p.name} expects {p.type_name}, got {value!r}{extra}")


def _unknown(top: str, path: str, who: str, key: str, fp: FactoryParams) -> OdqaBenchError:
    by = "" if not path else f" by {who!r}"
    return OdqaBenchError(f"retriever {top!r}: bad parameters: unknown {path + key!r}; accepted{by}: "
                          f"{', '.join(fp.accepted()) or 'none'}")


def _nested_target(fp: FactoryParams, head: str, given: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """Where ``head.key=value`` goes, and which retriever types its values: ``head_params`` when
    the factory has one (typed by the retriever named by ``head``: ray's ``inner``), else a mapping
    parameter ``head`` (typed by the retriever called ``head`` when there is one: dpr's ``dense``)."""
    if f"{head}_params" in fp.params and fp.nested_head(f"{head}_params") == head:
        named = given.get(head, fp.params[head].default)
        return f"{head}_params", named if isinstance(named, str) else None
    if head in fp.params and fp.nested_head(head) == head:
        return head, head
    return None


def parse_params(top: str, factory: Callable[..., Any], raw: Mapping[str, str], resolve: Resolver,
                 *, path: str = "", who: str = "") -> dict[str, Any]:
    """Command-line text ``{key: text}`` (keys may be dotted: ``inner.tokenizer``) to typed
    keyword arguments for ``factory``; ``top`` names the retriever in messages."""
    fp = factory_params(factory)
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, str]] = {}
    for key, text in raw.items():
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = text
            continue
        p = fp.params.get(key)
        if p is None:
            if not fp.passes_others:
                raise _unknown(top, path, who or top, key, fp)
            out[key] = guess_value(text)
            continue
        try:
            out[key] = _parse(text, p.annotation)
        except _Unparsable as exc:
            hint = f"give its entries as {path}{key.removesuffix('_params')}.KEY=VALUE" if exc.hint == _MAPPING else exc.hint
            raise _bad_value(top, path, p, text, hint) from None
    for head, sub in nested.items():
        target = _nested_target(fp, head, out)
        if target is None:
            nestable = sorted(h for h in fp.params if _nested_target(fp, h, out) is not None)
            raise OdqaBenchError(f"retriever {top!r}: {path + head!r} takes no nested parameters "
                                 f"(nested ones: {', '.join(nestable) or 'none'})")
        param, named = target
        inner = resolve(named) if named else None
        if inner is not None:
            out[param] = parse_params(top, inner, sub, resolve, path=f"{path}{head}.", who=str(named))
        else:
            if any("." in k for k in sub):
                raise OdqaBenchError(f"retriever {top!r}: {path + head!r} takes one level of nested parameters")
            out[param] = {k: guess_value(v) for k, v in sub.items()}
    return out


def check_params(top: str, factory: Callable[..., Any], params: Mapping[str, Any], resolve: Resolver,
                 *, path: str = "", who: str = "") -> None:
    """Refuse Python keyword arguments that ``factory`` does not take or whose type does not fit
    its annotation, with one line naming the parameter, the expected type and the value."""
    fp = factory_params(factory)
    for key, value in params.items():
        p = fp.params.get(key)
        if p is None:
            if not fp.passes_others:
                raise _unknown(top, path, who or top, key, fp)
            continue
        if not _fits(value, p.annotation):
            raise _bad_value(top, path, p, value)
    for key in fp.params:
        target = _nested_target(fp, key, params) if key in params or f"{key}_params" in params else None
        if target is None or not isinstance(params.get(target[0]), Mapping) or not target[1]:
            continue
        inner = resolve(target[1])
        if inner is not None:
            check_params(top, inner, params[target[0]], resolve, path=f"{path}{key}.", who=target[1])
