#!/usr/bin/env python3
"""test_yaml_subset.py - the YAML reader of the contract test against values written out by hand,
and its refusals of what it does not handle. Run by `make check` before the contract test.

The cases agree with PyYAML (checked when they were written; CI has no PyYAML) except 1e3, a float
in YAML 1.2 but a string to PyYAML's YAML 1.1; PyYAML also takes anchors, which this reader
refuses, and duplicate keys, which YAML forbids. api/openapi.yaml itself reads the same with both.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yaml_subset import YamlError, load  # noqa: E402

CASES = [
    ("a: 1\nb: -2.5\nc: 1e3\nd: true\ne: null\nf: ~\ng: 0.1.0\nh: '3'\n",
     {"a": 1, "b": -2.5, "c": 1000.0, "d": True, "e": None, "f": None, "g": "0.1.0", "h": "3"}),
    ("# comment\nk: v  # trailing\nurl: http://x/y#z\n", {"k": "v", "url": "http://x/y#z"}),
    ("s: \"a\\tb\\u00e9 # not a comment\"\nq: 'it''s'\n",
     {"s": "a\tb\u00e9 # not a comment", "q": "it's"}),
    ("m:\n  n:\n    o: 1\n  p: [1, two, \"3\"]\n", {"m": {"n": {"o": 1}, "p": [1, "two", "3"]}}),
    ("l:\n- a\n- b: 1\n  c: 2\n-\n  - 3\n", {"l": ["a", {"b": 1, "c": 2}, [3]]}),
    ("l:\n  - - 1\n    - 2\n  - x: {y: [a, b], z: {}}\n",
     {"l": [[1, 2], {"x": {"y": ["a", "b"], "z": {}}}]}),
    ("f: {type: [integer, \"null\"], d: The server's default (90).}\n",
     {"f": {"type": ["integer", "null"], "d": "The server's default (90)."}}),
    # A comma ends a plain scalar in a flow collection; what follows is a key with a null value.
    ("f: {d: one, two.}\n", {"f": {"d": "one", "two.": None}}),
    ("e: [a, b,\n    c]\n", {"e": ["a", "b", "c"]}),
    ("t: |\n  one\n    two\n\n  three\nu: 1\n", {"t": "one\n  two\n\nthree\n", "u": 1}),
    ("t: >-\n  folded\n  text\n\n  para\n", {"t": "folded text\npara"}),
    ("t: |+\n  keep\n\nu: 2\n", {"t": "keep\n\n", "u": 2}),
    ("p: plain text\n  continued here\n", {"p": "plain text continued here"}),
    ("'200': ok\n\"/v1/jobs/{id}\": x\n", {"200": "ok", "/v1/jobs/{id}": "x"}),
]

REFUSED = [
    "a: &anchor 1\n",
    "a: *alias\n",
    "a: 1\na: 2\n",
    "a:\n\t- 1\n",
    "a: [1, 2\n",
    "a: 1\n---\nb: 2\n",
]


def main():
    failed = 0
    for text, want in CASES:
        try:
            got = load(text)
        except YamlError as e:
            got = "YamlError: %s" % e
        if got != want:
            failed += 1
            print("FAIL %r\n  got  %r\n  want %r" % (text, got, want))
    for text in REFUSED:
        try:
            got = load(text)
            failed += 1
            print("FAIL %r should be refused, got %r" % (text, got))
        except YamlError:
            pass
    print("yaml_subset: %d cases, %d failed" % (len(CASES) + len(REFUSED), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
