"""yaml_subset.py - a reader for the YAML that api/openapi.yaml is written in, standard library
only (CI has no PyYAML).

Handled: block mappings and sequences by indentation (a sequence may sit at its key's indent),
"- key: value" items, plain / 'single' / "double" quoted scalars (double with JSON-style escapes),
literal (|) and folded (>) block scalars with the -, + chomping indicators, flow sequences and
flow mappings ([a, b], {type: string}) that may span lines, comments, and the core schema's
scalars (null ~, true false, integers, floats). Not handled (an error names the line): anchors,
aliases, tags, multi-document streams, complex keys. load() raises YamlError on anything else.
"""
import json
import re


class YamlError(ValueError):
    pass


_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _scalar(text, lineno):
    """A plain or quoted scalar (already stripped of comments)."""
    t = text.strip()
    if t == "":
        return None
    if t[0] == '"':
        if not t.endswith('"') or len(t) < 2:
            raise YamlError("line %d: unterminated double-quoted string" % lineno)
        return json.loads(t)
    if t[0] == "'":
        if not t.endswith("'") or len(t) < 2:
            raise YamlError("line %d: unterminated single-quoted string" % lineno)
        return t[1:-1].replace("''", "'")
    if t[0] in "&*!|>%@`":
        raise YamlError("line %d: unsupported YAML: %r" % (lineno, t))
    if t in ("null", "Null", "NULL", "~"):
        return None
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if _INT.match(t):
        return int(t)
    if _FLOAT.match(t) and any(c.isdigit() for c in t):
        return float(t)
    return t


def _strip_comment(s):
    """s without a trailing "# comment" (a # that starts the text or follows a space, outside
    quotes)."""
    quote = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"" and (i == 0 or s[i - 1] in " \t[{,:"):
            quote = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


class _Flow:
    """Parses a flow collection: [a, "b", {k: v}]."""

    def __init__(self, text, lineno):
        self.s, self.i, self.lineno = text, 0, lineno

    def error(self, what):
        return YamlError("line %d: %s in flow collection %r" % (self.lineno, what, self.s))

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\n":
            self.i += 1

    def value(self):
        self.ws()
        if self.i >= len(self.s):
            raise self.error("unexpected end")
        c = self.s[self.i]
        if c == "[":
            self.i += 1
            out = []
            self.ws()
            if self.s[self.i:self.i + 1] == "]":
                self.i += 1
                return out
            while True:
                out.append(self.value())
                self.ws()
                c = self.s[self.i:self.i + 1]
                self.i += 1
                if c == "]":
                    return out
                if c != ",":
                    raise self.error("expected , or ]")
                self.ws()
                if self.s[self.i:self.i + 1] == "]":  # trailing comma
                    self.i += 1
                    return out
        if c == "{":
            self.i += 1
            out = {}
            self.ws()
            if self.s[self.i:self.i + 1] == "}":
                self.i += 1
                return out
            while True:
                key = self.value()
                self.ws()
                if self.s[self.i:self.i + 1] in (",", "}"):
                    out[key] = None  # "{a, b: 1}": a is a key with a null value, as YAML says
                else:
                    if self.s[self.i:self.i + 1] != ":":
                        raise self.error("expected :")
                    self.i += 1
                    out[key] = self.value()
                self.ws()
                c = self.s[self.i:self.i + 1]
                self.i += 1
                if c == "}":
                    return out
                if c != ",":
                    raise self.error("expected , or }")
        if c in "'\"":
            j = self.i + 1
            while j < len(self.s):
                if self.s[j] == "\\" and c == '"':
                    j += 2
                    continue
                if self.s[j] == c:
                    if c == "'" and self.s[j + 1:j + 2] == "'":
                        j += 2
                        continue
                    break
                j += 1
            tok = self.s[self.i:j + 1]
            self.i = j + 1
            return _scalar(tok, self.lineno)
        j = self.i
        while j < len(self.s) and self.s[j] not in ",]}" and not (
                self.s[j] == ":" and (j + 1 == len(self.s) or self.s[j + 1] in " ,]}")):
            j += 1
        tok = self.s[self.i:j]
        self.i = j
        return _scalar(tok, self.lineno)


class _Reader:
    def __init__(self, text):
        m = re.search(r"^ *\t", text, re.M)
        if m:
            raise YamlError("line %d: a tab in the indentation" % (text[:m.start()].count("\n") + 1))
        self.lines = text.split("\n")
        self.n = len(self.lines)

    def indent_of(self, i):
        line = self.lines[i]
        return len(line) - len(line.lstrip(" "))

    def skip(self, i):
        """The next line at or after i that holds something."""
        while i < self.n:
            s = self.lines[i].strip()
            if s and not s.startswith("#") and s != "---":
                return i
            if s == "---" and i > 0 and any(l.strip() and not l.strip().startswith("#")
                                            for l in self.lines[:i]):
                raise YamlError("line %d: several documents" % (i + 1))
            i += 1
        return i

    def block(self, i, indent):
        """The node whose lines start at i with this indent. Returns (value, next line)."""
        i = self.skip(i)
        if i >= self.n or self.indent_of(i) < indent:
            return None, i
        body = self.lines[i].strip()
        if body == "-" or body.startswith("- "):
            return self.sequence(i, self.indent_of(i))
        return self.mapping(i, self.indent_of(i))

    def sequence(self, i, indent):
        out = []
        while True:
            i = self.skip(i)
            if i >= self.n or self.indent_of(i) != indent:
                return out, i
            body = self.lines[i].strip()
            if not (body == "-" or body.startswith("- ")):
                return out, i
            rest = body[1:].lstrip(" ")
            if rest == "" or rest.startswith("#"):
                value, i = self.block(i + 1, indent + 1)
                out.append(value)
                continue
            # "- key: value" or "- scalar": the item's content starts at the rest's column.
            col = indent + (len(body) - len(rest))
            self.lines[i] = " " * col + rest
            if rest == "-" or rest.startswith("- "):
                value, i = self.sequence(i, col)
            elif self._is_key_line(rest):
                value, i = self.mapping(i, col)
            else:
                value, i = self.inline(rest, i, col)
            out.append(value)

    @staticmethod
    def _is_key_line(s):
        if s[0] in "[{\"'" and not re.match(r"^(\"[^\"]*\"|'[^']*')\s*:(\s|$)", s):
            return False
        return re.match(r"^(\"[^\"]*\"|'[^']*'|[^\s#'\"][^#]*?)\s*:(\s|$)", s) is not None

    def mapping(self, i, indent):
        out = {}
        while True:
            i = self.skip(i)
            if i >= self.n or self.indent_of(i) != indent:
                return out, i
            body = self.lines[i].strip()
            if body.startswith("- ") or body == "-":
                return out, i
            m = re.match(r"^(\"[^\"]*\"|'[^']*'|[^\s#'\"][^#]*?)\s*:(\s+(.*))?$", body)
            if not m:
                raise YamlError("line %d: expected 'key: value': %r" % (i + 1, body))
            key = _scalar(m.group(1), i + 1)
            if isinstance(key, (int, float, bool)) or key is None:
                key = m.group(1).strip("'\"")
            if key in out:
                raise YamlError("line %d: duplicate key %r" % (i + 1, key))
            rest = _strip_comment(m.group(3) or "")
            if rest == "":
                j = self.skip(i + 1)
                if j < self.n and self.indent_of(j) == indent and \
                        (self.lines[j].strip().startswith("- ") or self.lines[j].strip() == "-"):
                    out[key], i = self.sequence(j, indent)
                else:
                    out[key], i = self.block(i + 1, indent + 1)
            else:
                out[key], i = self.inline(rest, i, indent)

    def inline(self, rest, i, indent):
        """A value that starts on line i after 'key: ' or '- '. Returns (value, next line)."""
        rest = _strip_comment(rest)
        if rest[0] in "|>":
            return self.block_scalar(rest, i, indent)
        if rest[0] in "[{":
            text, j = rest, i
            while not self._balanced(text):
                j += 1
                if j >= self.n:
                    raise YamlError("line %d: unterminated flow collection" % (i + 1))
                text += "\n" + _strip_comment(self.lines[j].strip())
            return _Flow(text, i + 1).value(), j + 1
        # A plain scalar may continue on more-indented lines (folded with spaces).
        parts, j = [rest], i + 1
        if rest[0] not in "'\"":
            while j < self.n and self.lines[j].strip() and self.indent_of(j) > indent and \
                    not self.lines[j].strip().startswith("#"):
                parts.append(_strip_comment(self.lines[j].strip()))
                j += 1
        elif rest[0] == '"' and not (len(rest) > 1 and rest.endswith('"')):
            while j < self.n:
                parts.append(self.lines[j].strip())
                j += 1
                if parts[-1].endswith('"'):
                    break
        return _scalar(" ".join(parts), i + 1), j

    @staticmethod
    def _balanced(text):
        # A quote opens a quoted scalar only where a scalar starts (after [ { , : or a line
        # start); elsewhere it is text ("the server's").
        depth, quote, prev = 0, None, "["
        for c in text:
            if quote:
                if c == quote:
                    quote = None
            elif c in "'\"" and prev in "[{,:":
                quote = c
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
            if not c.isspace() or c == "\n":
                prev = "," if c == "\n" else c
        return depth == 0

    def block_scalar(self, header, i, indent):
        m = re.match(r"^([|>])([-+]?)([1-9]?)([-+]?)$", header)
        if not m:
            raise YamlError("line %d: bad block scalar header %r" % (i + 1, header))
        style, chomp = m.group(1), m.group(2) or m.group(4)
        j, lines, block_indent = i + 1, [], None
        while j < self.n:
            line = self.lines[j]
            if line.strip() == "":
                lines.append("")
                j += 1
                continue
            ind = len(line) - len(line.lstrip(" "))
            if block_indent is None:
                if ind <= indent:
                    break
                block_indent = ind
            if ind < block_indent:
                break
            lines.append(line[block_indent:])
            j += 1
        # Trailing blank lines belong to the chomping, not the text.
        trailing = 0
        while lines and lines[-1] == "":
            lines.pop()
            trailing += 1
        j -= trailing
        if style == "|":
            text = "\n".join(lines)
        else:
            text, prev_blank = "", True
            for line in lines:
                if line == "":
                    text += "\n"
                    prev_blank = True
                elif line.startswith(" "):
                    text += ("\n" if not prev_blank else "") + line
                    prev_blank = False
                else:
                    text += ("" if prev_blank else " ") + line
                    prev_blank = False
        if chomp == "-":
            return text, j
        if chomp == "+":
            return text + "\n" * (1 + trailing), j
        return (text + "\n") if lines else "", j


def load(text):
    """The value of a YAML document in the subset described above."""
    r = _Reader(text)
    value, i = r.block(0, 0)
    i = r.skip(i)
    if i < r.n:
        raise YamlError("line %d: unexpected text %r" % (i + 1, r.lines[i].strip()))
    return value


def load_file(path):
    with open(path, encoding="utf-8") as f:
        return load(f.read())
