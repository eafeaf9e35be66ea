#!/usr/bin/env python3
"""Writes the seeds of fuzz_tokenizer_load (tests/fuzz/corpus/tokenizer_load/).

Run from the repository root. Each seed is a layout byte and files joined by SEP (see
tests/fuzz/fuzz_tokenizer_load.c). The real tokenizers in the repository are too large for
seeds (the T5 vocabulary and its 240 KB charsmap, CLIP's 49408 tokens), so the seeds keep
their structure at a few KB: the T5 tokenizer.json with its first pieces and a small
precompiled charsmap built here (a darts-clone double array, as sentencepiece writes it), and
the embedded model's small CLIP vocab.json + merges.txt as they are.
"""
import base64
import json
import os
import struct

SEP = b"\n@@@@\n"
OUT = "tests/fuzz/corpus/tokenizer_load"

# A few of nmt_nfkc's rules: full-width, ligature, circled digit, ideographic space, ellipsis.
RULES = {"\uff21": "A", "\ufb01": "fi", "\u2460": "1", "\u3000": " ", "\u2026": "...",
         "\u2122": "TM", "e\u0301": "\u00e9"}


def charsmap(rules):
    """The precompiled_charsmap blob: u32 trie size, darts-clone units, NUL-separated strings."""
    strings = b""
    values = {}
    for k, v in sorted(rules.items()):
        values[k.encode()] = len(strings)
        strings += v.encode() + b"\0"
    # The trie of the keys' bytes; a node with a value gets a leaf child of label 0.
    trie = {}
    for key, val in values.items():
        node = trie
        for b in key:
            node = node.setdefault(b, {})
        node[None] = val
    units = {}
    used_bases = set()

    def place(node, idx, label):
        children = sorted(b for b in node if b is not None)
        labels = children + ([0] if None in node else [])
        base = 1
        while base in used_bases or any((idx ^ base ^ c) in units or (idx ^ base ^ c) == 0
                                        for c in labels):
            base += 1
        used_bases.add(base)
        has_leaf = 1 if None in node else 0
        units[idx] = (base << 10) | (has_leaf << 8) | label
        if has_leaf:
            units[idx ^ base] = node[None] | (1 << 31)
        for c in children:
            units[idx ^ base ^ c] = None  # reserve before recursing
        for c in children:
            place(node[c], idx ^ base ^ c, c)

    units[0] = None
    place(trie, 0, 0)
    n = max(units) + 1
    words = [units.get(i) or 0 for i in range(n)]
    blob = struct.pack("<I", 4 * n) + b"".join(struct.pack("<I", w) for w in words)
    return blob + strings


def t5_small(cm):
    d = json.load(open("tests/fixtures/tokenizers/t5/tokenizer.json"))
    d["model"]["vocab"] = d["model"]["vocab"][:160]
    d["added_tokens"] = d["added_tokens"][:3]
    d["normalizer"] = {"type": "Precompiled",
                       "precompiled_charsmap": base64.b64encode(cm).decode()}
    return json.dumps(d, ensure_ascii=False).encode()


def read(p):
    return open(p, "rb").read()


def write(name, layout, parts):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([layout]) + SEP.join(parts))


def main():
    os.makedirs(OUT, exist_ok=True)
    cm = charsmap(RULES)
    t5 = t5_small(cm)
    t5cfg = json.dumps({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                        "model_max_length": 512,
                        "additional_special_tokens": ["<extra_id_0>"]}).encode()
    write("t5_tokenizer_json", 0, [t5, t5cfg, b"", "\uff21 \ufb01ne caf\u00e9 \u2460".encode()])
    write("t5_no_config", 0, [t5])
    d = json.loads(t5)
    d["post_processor"] = {"type": "RobertaProcessing", "cls": ["<pad>", 0], "sep": ["</s>", 1]}
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "first", "split": False}
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True,
                                                 "strip_right": True},
        {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Prepend", "prepend": "\u2581"}]}
    write("unigram_roberta", 0, [json.dumps(d).encode()])
    # A byte-level BPE tokenizer.json from the embedded model's CLIP vocabulary.
    vocab = json.loads(read("models/default/tokenizer/vocab.json"))
    merges = [m for m in read("models/default/tokenizer/merges.txt").decode().splitlines()
              if m and not m.startswith("#")]
    bpe = {"version": "1.0", "added_tokens": [
        {"id": vocab["<|startoftext|>"], "content": "<|startoftext|>", "special": True},
        {"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "RobertaProcessing",
                           "sep": ["<|endoftext|>", vocab["<|endoftext|>"]],
                           "cls": ["<|startoftext|>", vocab["<|startoftext|>"]]},
        "model": {"type": "BPE", "unk_token": "<|endoftext|>", "end_of_word_suffix": "</w>",
                  "continuing_subword_prefix": "", "fuse_unk": False, "vocab": vocab,
                  "merges": merges}}
    write("bpe_tokenizer_json", 0, [json.dumps(bpe).encode(), b"", b"",
                                    b"A photo of a CAT's hat!"])
    tok = "models/default/tokenizer/"
    write("clip_vocab_merges", 1, [read(tok + "vocab.json"), read(tok + "merges.txt"),
                                   read(tok + "tokenizer_config.json"),
                                   read(tok + "special_tokens_map.json"), b"a red cube, 2 dogs"])
    write("clip_vocab_merges_bare", 1, [read(tok + "vocab.json"), read(tok + "merges.txt")])
    write("charsmap_small", 2, [cm, "\uff21\ufb01 \u2460\u3000\u2026 e\u0301x".encode()])
    write("charsmap_empty_trie", 2, [struct.pack("<I", 0) + b"abc\0"])
    write("charsmap_short", 2, [b"\x01\x02"])


if __name__ == "__main__":
    main()
