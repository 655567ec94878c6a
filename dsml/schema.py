"""A compiled validator for the JSON-schema subset that tool parameters use.

`compile_schema(schema)` turns a schema into nested closures once; validating then costs a few
dictionary look-ups per value (the general `jsonschema` package re-interprets the schema on
every call and is far slower). Supported: type (one or a list), enum, const, properties,
required, additionalProperties (bool or schema), items, prefixItems, min/maxItems, min/maxLength,
pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum, anyOf, oneOf, allOf, not, and
local `$ref`s (`#/$defs/...`, `#/definitions/...`). Annotations (description, default, title,
format, $schema...) are ignored, as JSON Schema prescribes for unknown keywords.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: validator(value, path) -> None when valid, else a message a model can act on.
Validator = Callable[[Any, str], str | None]


def _is_integer(v: Any) -> bool:
    return (type(v) is int) or (type(v) is float and v.is_integer())


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": _is_integer,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


def json_type(v: Any) -> str:
    """The JSON type name of a decoded value."""
    if v is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def compile_schema(schema: dict[str, Any] | bool, root: dict[str, Any] | None = None) -> Validator:
    """Compile `schema` (a JSON-schema object or a boolean schema) into a validator."""
    if schema is True or schema == {}:
        return _accept
    if schema is False:
        return lambda v, path: f"{path}: no value is allowed here"
    if not isinstance(schema, dict):
        raise TypeError(f"a JSON schema is an object or a boolean, got {schema!r}")
    root = schema if root is None else root
    checks: list[Validator] = []

    if "$ref" in schema:
        checks.append(_ref(schema["$ref"], root))
    if "type" in schema:
        checks.append(_type(schema["type"]))
    if "enum" in schema:
        options = schema["enum"]
        checks.append(
            lambda v, p: None if _in(v, options) else f"{p}: {_show(v)} is not one of {options!r}"
        )
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v, p: None if _in(v, [const]) else f"{p}: must be {const!r}")
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        checks.append(_object(schema, root))
    if "items" in schema or "prefixItems" in schema:
        checks.append(_items(schema, root))
    checks += _bounds(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            checks.append(_alternatives(key, [compile_schema(s, root) for s in schema[key]]))
    for sub in schema.get("allOf", ()):
        checks.append(compile_schema(sub, root))
    if "not" in schema:
        negated = compile_schema(schema["not"], root)
        checks.append(
            lambda v, p: f"{p}: must not match {schema['not']!r}" if negated(v, p) is None else None
        )

    if not checks:
        return _accept
    if len(checks) == 1:
        return checks[0]

    def validate(value: Any, path: str) -> str | None:
        for check in checks:
            error = check(value, path)
            if error is not None:
                return error
        return None

    return validate


def _accept(value: Any, path: str) -> None:
    return None


def _in(value: Any, options: list[Any]) -> bool:
    # JSON equality: True is not 1, 1 equals 1.0.
    return any(value == o and (type(value) is bool) == (type(o) is bool) for o in options)


def _type(spec: str | list[str]) -> Validator:
    names = [spec] if isinstance(spec, str) else list(spec)
    unknown = [n for n in names if n not in _TYPE_CHECKS]
    if unknown:
        raise ValueError(f"unknown JSON-schema type(s) {unknown}; known: {sorted(_TYPE_CHECKS)}")
    tests = [_TYPE_CHECKS[n] for n in names]
    wanted = " or ".join(names)
    if len(tests) == 1:
        test = tests[0]
        return lambda v, p: (
            None if test(v) else (f"{p}: expected {wanted}, got {json_type(v)} {_show(v)}")
        )
    return lambda v, p: (
        None
        if any(t(v) for t in tests)
        else (f"{p}: expected {wanted}, got {json_type(v)} {_show(v)}")
    )


def _object(schema: dict[str, Any], root: dict[str, Any]) -> Validator:
    props = {k: compile_schema(s, root) for k, s in schema.get("properties", {}).items()}
    required = list(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True else compile_schema(extra, root) if extra else False
    allowed = sorted(props)

    def validate(value: Any, path: str) -> str | None:
        if type(value) is not dict:
            return None  # the type keyword, if any, reports it
        for name in required:
            if name not in value:
                return f"{path}: missing required property {name!r}"
        for key, item in value.items():
            check = props.get(key)
            sub = f"{path}.{key}"
            if check is None:
                if extra_check is None:
                    continue
                if extra_check is False:
                    return (
                        f"{path}: unexpected property {key!r} "
                        f"(allowed: {', '.join(allowed) or 'none'})"
                    )
                check = extra_check
            error = check(item, sub)
            if error is not None:
                return error
        return None

    return validate


def _items(schema: dict[str, Any], root: dict[str, Any]) -> Validator:
    prefix = [compile_schema(s, root) for s in schema.get("prefixItems", ())]
    rest = schema.get("items", True)
    rest_check = compile_schema(rest, root) if rest is not True else _accept

    def validate(value: Any, path: str) -> str | None:
        if type(value) is not list:
            return None
        for i, item in enumerate(value):
            check = prefix[i] if i < len(prefix) else rest_check
            error = check(item, f"{path}[{i}]")
            if error is not None:
                return error
        return None

    return validate


def _bounds(schema: dict[str, Any]) -> list[Validator]:
    checks: list[Validator] = []

    def add(
        key: str,
        applies: Callable[[Any], bool],
        measure: Callable[[Any], Any],
        ok: Callable[[Any, Any], bool],
        says: str,
    ) -> None:
        if key in schema:
            limit = schema[key]
            checks.append(
                lambda v, p: (
                    None
                    if not applies(v) or ok(measure(v), limit)
                    else f"{p}: {says} {limit} (got {_show(v)})"
                )
            )

    is_num = _TYPE_CHECKS["number"]
    is_str = _TYPE_CHECKS["string"]
    is_arr = _TYPE_CHECKS["array"]
    add("minimum", is_num, lambda v: v, lambda m, lim: m >= lim, "must be >=")
    add("maximum", is_num, lambda v: v, lambda m, lim: m <= lim, "must be <=")
    add("exclusiveMinimum", is_num, lambda v: v, lambda m, lim: m > lim, "must be >")
    add("exclusiveMaximum", is_num, lambda v: v, lambda m, lim: m < lim, "must be <")
    add("minLength", is_str, len, lambda m, lim: m >= lim, "length must be >=")
    add("maxLength", is_str, len, lambda m, lim: m <= lim, "length must be <=")
    add("minItems", is_arr, len, lambda m, lim: m >= lim, "item count must be >=")
    add("maxItems", is_arr, len, lambda m, lim: m <= lim, "item count must be <=")
    if "pattern" in schema:
        pattern = re.compile(schema["pattern"])
        checks.append(
            lambda v, p: (
                None
                if not is_str(v) or pattern.search(v)
                else f"{p}: {_show(v)} does not match /{pattern.pattern}/"
            )
        )
    return checks


def _alternatives(key: str, options: list[Validator]) -> Validator:
    def validate(value: Any, path: str) -> str | None:
        errors = [check(value, path) for check in options]
        passed = errors.count(None)
        if key == "anyOf" and passed:
            return None
        if key == "oneOf" and passed == 1:
            return None
        if passed > 1:
            return f"{path}: {_show(value)} matches {passed} alternatives of oneOf, not exactly one"
        return f"{path}: matches none of the allowed forms ({'; '.join(errors)})"

    return validate


def _ref(ref: str, root: dict[str, Any]) -> Validator:
    if not ref.startswith("#"):
        raise ValueError(f"only local $refs (#/...) are supported, got {ref!r}")
    compiled: list[Validator] = []

    def validate(value: Any, path: str) -> str | None:
        if not compiled:  # resolved on first use: refs may be recursive
            target: Any = root
            for part in ref.lstrip("#").strip("/").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            compiled.append(compile_schema(target, root))
        return compiled[0](value, path)

    return validate
