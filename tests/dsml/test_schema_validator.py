"""The compiled JSON-schema subset: each keyword accepts what it should and explains refusals."""

from __future__ import annotations

import pytest

from dsml import compile_schema


def check(schema, value):
    return compile_schema(schema)(value, "arguments")


@pytest.mark.parametrize(
    ("schema", "good", "bad", "says"),
    [
        ({"type": "integer"}, 2.0, 2.5, "expected integer, got number 2.5"),
        ({"type": "integer"}, -3, True, "expected integer, got boolean True"),
        ({"type": "number"}, 1e21, "1", "expected number, got string"),
        ({"type": ["string", "null"]}, None, 0, "expected string or null"),
        ({"type": "boolean"}, False, 0, "expected boolean"),
        ({"enum": [1, "a", None]}, 1.0, True, "not one of"),
        ({"const": "x"}, "x", "y", "must be 'x'"),
        ({"minimum": 0, "maximum": 10}, 10, 11, "must be <= 10"),
        ({"exclusiveMinimum": 0}, 0.1, 0, "must be > 0"),
        ({"exclusiveMaximum": 1}, 0, 1, "must be < 1"),
        ({"minLength": 2, "maxLength": 3}, "abc", "abcd", "length must be <= 3"),
        ({"minLength": 2}, "ab", "a", "length must be >= 2"),
        ({"pattern": "^[a-z]+$"}, "abc", "ab1", "does not match"),
        ({"minItems": 1, "maxItems": 2}, [1], [], "item count must be >= 1"),
        ({"maxItems": 1}, [1], [1, 2], "item count must be <= 1"),
        (
            {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
            ["a", 1, 2],
            ["a", "b"],
            "arguments[1]: expected integer",
        ),
        ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, -1, 1, "matches 2 alternatives"),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "x", [], "matches none"),
        ({"allOf": [{"type": "integer"}, {"minimum": 5}]}, 5, 4, "must be >= 5"),
        ({"not": {"type": "string"}}, 1, "s", "must not match"),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"a": 1},
            {"a": "1"},
            "arguments.a: expected integer",
        ),
        (
            {
                "$defs": {"pos": {"type": "integer", "minimum": 1}},
                "type": "array",
                "items": {"$ref": "#/$defs/pos"},
            },
            [1, 2],
            [1, 0],
            "arguments[1]: must be >= 1",
        ),
        (False, None, 1, "no value is allowed"),
    ],
)
def test_keywords(schema, good, bad, says) -> None:
    if schema is not False:
        assert check(schema, good) is None
    assert says in check(schema, bad)


def test_annotations_and_empty_schemas_accept_anything() -> None:
    for value in (None, 1, "x", [1], {"a": 1}):
        assert check({}, value) is None
        assert check(True, value) is None
        assert (
            check({"description": "d", "default": 3, "title": "t", "format": "uri"}, value) is None
        )


def test_recursive_refs_resolve() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    }
    assert check(tree, {"children": [{"children": []}]}) is None
    assert "arguments.children[0]: unexpected property 'x'" in check(tree, {"children": [{"x": 1}]})


def test_schemas_the_validator_cannot_honour_are_refused_when_compiled() -> None:
    with pytest.raises(ValueError, match="unknown JSON-schema type"):
        compile_schema({"type": "int"})
    with pytest.raises(ValueError, match="local"):
        compile_schema({"$ref": "http://example.com/s.json"})
    with pytest.raises(TypeError):
        compile_schema([])  # type: ignore[arg-type]
