#!/usr/bin/env python3
"""test_schema.py - the contract test's JSON Schema checker (schema.py) on values that must pass
and values that must fail, so that a contract run cannot pass because the checker saw nothing.
Run by `make check` before the contract test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema import validate  # noqa: E402

SPEC = {"components": {"schemas": {
    "Obj": {"type": "object", "additionalProperties": False, "required": ["id", "n"],
            "properties": {"id": {"type": "string", "minLength": 1},
                           "n": {"type": "integer", "minimum": 1, "maximum": 8},
                           "q": {"type": ["number", "null"], "exclusiveMaximum": 1},
                           "kind": {"type": "string", "enum": ["a", "b"]},
                           "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
                           "list": {"type": "array", "minItems": 1,
                                    "items": {"$ref": "#/components/schemas/Item"}}}},
    "Item": {"type": "object", "properties": {"w": {"type": "integer", "multipleOf": 16}}},
    "Either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
}}}
OBJ = {"$ref": "#/components/schemas/Obj"}

GOOD = [
    ({"id": "x", "n": 1}, OBJ),
    ({"id": "x", "n": 8, "q": None, "kind": "b", "size": "32x48", "list": [{"w": 32}]}, OBJ),
    ({"id": "x", "n": 2, "q": 0.5}, OBJ),
    ("s", {"$ref": "#/components/schemas/Either"}),
    (3, {"$ref": "#/components/schemas/Either"}),
    ("ok", {"type": "string", "const": "ok"}),
]
BAD = [
    ({"n": 1}, OBJ),                                # required id missing
    ({"id": "x", "n": 1, "extra": 1}, OBJ),         # additionalProperties false
    ({"id": "", "n": 1}, OBJ),                      # minLength
    ({"id": "x", "n": 9}, OBJ),                     # maximum
    ({"id": "x", "n": 0}, OBJ),                     # minimum
    ({"id": "x", "n": 1.5}, OBJ),                   # integer
    ({"id": "x", "n": True}, OBJ),                  # a boolean is no integer
    ({"id": "x", "n": 1, "q": 1}, OBJ),             # exclusiveMaximum
    ({"id": "x", "n": 1, "kind": "c"}, OBJ),        # enum
    ({"id": "x", "n": 1, "size": "32 x 48"}, OBJ),  # pattern
    ({"id": "x", "n": 1, "list": []}, OBJ),         # minItems
    ({"id": "x", "n": 1, "list": [{"w": 40}]}, OBJ),  # multipleOf through $ref
    (1.5, {"$ref": "#/components/schemas/Either"}),  # oneOf: none
    ("no", {"type": "string", "const": "ok"}),
    ("x", {"type": "string", "descriptoin": "a typo"}),  # unknown keyword: not silently passed
]


def main():
    failed = 0
    for value, schema in GOOD:
        errs = validate(value, schema, SPEC)
        if errs:
            failed += 1
            print("FAIL %r should pass: %s" % (value, errs))
    for value, schema in BAD:
        if not validate(value, schema, SPEC):
            failed += 1
            print("FAIL %r should fail against %r" % (value, schema))
    print("schema: %d cases, %d failed" % (len(GOOD) + len(BAD), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
