"""schema.py - the part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that api/openapi.yaml
uses, to check the daemon's answers against it. Standard library only.

validate(value, schema, spec) returns a list of "path: problem" strings (empty when the value
matches). Handled: $ref (local "#/..."), type (a name or a list; "integer" excludes floats and
booleans), const, enum, properties, required, additionalProperties (false or a schema),
items, prefixItems, minItems, maxItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
multipleOf, minLength, maxLength, pattern, oneOf, anyOf, allOf, not, and OpenAPI 3.0's
nullable. Annotations (description, example, format, default, ...) are ignored.
"""
import re

_KNOWN = {
    "$ref", "type", "const", "enum", "properties", "required", "additionalProperties", "items",
    "prefixItems", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "oneOf", "anyOf",
    "allOf", "not", "nullable",
    # annotations
    "description", "title", "example", "examples", "format", "default", "deprecated",
    "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "externalDocs", "$comment",
    "discriminator", "xml", "uniqueItems", "minProperties", "maxProperties",
}


def resolve(spec, ref):
    """The object a local reference "#/a/b" points at."""
    if not ref.startswith("#/"):
        raise ValueError("only local $ref are supported: %s" % ref)
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ValueError("dangling $ref %s" % ref)
        node = node[part]
    return node


def deref(spec, node):
    """node with its $ref chain followed (siblings of a $ref are ignored, as in OpenAPI 3.0)."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise ValueError("$ref cycle at %s" % ref)
        seen.add(ref)
        node = resolve(spec, ref)
    return node


def _type_ok(value, t):
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or \
            (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise ValueError("unknown type %r" % t)


def unknown_keywords(schema):
    """Keywords of one schema node that this validator would silently ignore."""
    return sorted(k for k in schema if k not in _KNOWN and not k.startswith("x-"))


def validate(value, schema, spec, path="$"):
    errors = []
    if schema is True or schema == {}:
        return errors
    if schema is False:
        return ["%s: no value is allowed here" % path]
    if "$ref" in schema:
        return validate(value, resolve(spec, schema["$ref"]), spec, path)
    bad = unknown_keywords(schema)
    if bad:
        errors.append("%s: the schema uses keywords this test does not check: %s" % (path, bad))

    if schema.get("nullable") and value is None:
        return errors
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            return errors + ["%s: %r is not of type %s" % (path, _short(value), "|".join(types))]
    if "const" in schema and value != schema["const"]:
        errors.append("%s: %r is not %r" % (path, _short(value), schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: %r is not one of %s" % (path, _short(value), schema["enum"]))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("%s: %r < minimum %r" % (path, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append("%s: %r > maximum %r" % (path, value, schema["maximum"]))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append("%s: %r <= exclusiveMinimum %r" % (path, value, schema["exclusiveMinimum"]))
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append("%s: %r >= exclusiveMaximum %r" % (path, value, schema["exclusiveMaximum"]))
        if "multipleOf" in schema and value % schema["multipleOf"] != 0:
            errors.append("%s: %r is not a multiple of %r" % (path, value, schema["multipleOf"]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append("%s: shorter than %d" % (path, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (path, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append("%s: %r does not match %s" % (path, _short(value), schema["pattern"]))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append("%s: fewer than %d items" % (path, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append("%s: more than %d items" % (path, schema["maxItems"]))
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += validate(item, sub, spec, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append("%s: required property %r is missing" % (path, name))
        extra = schema.get("additionalProperties", True)
        for name, v in value.items():
            sub_path = "%s.%s" % (path, name)
            if name in props:
                errors += validate(v, props[name], spec, sub_path)
            elif extra is False:
                errors.append("%s: property not in the schema" % sub_path)
            elif isinstance(extra, dict):
                errors += validate(v, extra, spec, sub_path)

    for sub in schema.get("allOf", []):
        errors += validate(value, sub, spec, path)
    if "anyOf" in schema:
        if not any(not validate(value, sub, spec, path) for sub in schema["anyOf"]):
            errors.append("%s: matches none of anyOf" % path)
    if "oneOf" in schema:
        n = sum(1 for sub in schema["oneOf"] if not validate(value, sub, spec, path))
        if n != 1:
            errors.append("%s: matches %d of oneOf (exactly one needed)" % (path, n))
    if "not" in schema and not validate(value, schema["not"], spec, path):
        errors.append("%s: matches a schema it must not" % path)
    return errors


def _short(v):
    s = repr(v)
    return s if len(s) < 80 else s[:77] + "..."
