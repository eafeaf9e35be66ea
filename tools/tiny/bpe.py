"""bpe.py - a tiny byte-level BPE trainer and CLIP tokenizer, in CLIP's file format.

train(words) learns merges on a word-frequency table the way OpenAI's CLIP vocabulary was made
(byte-level symbols, the last symbol of a word carrying "</w>", the most frequent adjacent pair
merged first, ties broken by the pair's text), until every word is one symbol or max_merges is
reached. The result is written as CLIP's tokenizer files (write_files):

    vocab.json   the 256 byte symbols in CLIP's bytes_to_unicode order, the same 256 with "</w>",
                 one token per merge in merge order, then <|startoftext|> and <|endoftext|>
                 (so <|endoftext|> has the largest id, as in CLIP);
    merges.txt   "#version: 0.2" then one "left right" line per merge;
    tokenizer_config.json, special_tokens_map.json   CLIPTokenizer, pad = <|endoftext|>,
                 model_max_length = the context length.

Every byte is a symbol of the vocabulary, so any text tokenizes (unknown words fall back to
smaller pieces, down to single bytes). Tokenizer.encode follows CLIPTokenizer as tttd's
engine/text/tokenizer_clip.c does for ASCII text: whitespace runs to one space, lower case, the CLIP
regex split, byte-level BPE, <|startoftext|> ... <|endoftext|>, truncation keeping the final
<|endoftext|>, padding with the pad id. (Non-ASCII text is only needed by the C side; here it is
handled by the same regex on Python's idea of letters, which may differ in corner cases.)
"""
import json
import os
import re

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                  r"(?:[^\s\w]|_)+", re.IGNORECASE)


def bytes_to_unicode():
    """CLIP's (and GPT-2's) reversible byte -> printable unicode character map, in its order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def _clean(text):
    return " ".join(text.split()).lower()


def pretokenize(text):
    """CLIP's split of cleaned text into byte-level words."""
    return ["".join(BYTE_ENCODER[b] for b in tok.encode("utf-8"))
            for tok in _PAT.findall(_clean(text))]


def train(texts, max_merges=4000):
    """Merges [(left, right)] learned from an iterable of texts (each counted once)."""
    freq = {}
    for t in texts:
        for w in pretokenize(t):
            freq[w] = freq.get(w, 0) + 1
    words = {tuple(w[:-1]) + (w[-1] + "</w>",): c for w, c in freq.items()}
    merges = []
    while len(merges) < max_merges:
        pairs = {}
        for syms, c in words.items():
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = {}
        for syms, c in words.items():
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        words = merged
    return merges


def vocab_of(merges):
    """{token: id} in CLIP's order."""
    base = list(BYTE_ENCODER.values())
    toks = base + [b + "</w>" for b in base] + [a + b for a, b in merges] + [SOT, EOT]
    vocab = {}
    for t in toks:
        if t in vocab:
            raise ValueError("bpe: token %r made twice" % t)
        vocab[t] = len(vocab)
    return vocab


class Tokenizer:
    def __init__(self, merges, max_length):
        self.merges = list(merges)
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.vocab = vocab_of(self.merges)
        self.max_length = max_length
        self.sot, self.eot = self.vocab[SOT], self.vocab[EOT]
        self.pad = self.eot
        self.cache = {}

    @classmethod
    def from_files(cls, folder):
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(ln.split(" ")) for ln in lines[1:] if ln]
        with open(os.path.join(folder, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        tok = cls(merges, cfg["model_max_length"])
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            if json.load(f) != tok.vocab:
                raise ValueError("%s: vocab.json does not follow from merges.txt" % folder)
        return tok

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        syms = list(word[:-1]) + [word[-1] + "</w>"]
        while len(syms) > 1:
            ranked = [(self.ranks.get((a, b), None), i) for i, (a, b) in
                      enumerate(zip(syms, syms[1:]))]
            ranked = [r for r in ranked if r[0] is not None]
            if not ranked:
                break
            rank = min(ranked)[0]
            a, b = self.merges[rank]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        self.cache[word] = syms
        return syms

    def encode(self, text):
        """Exactly max_length ids: SOT, the text's tokens (truncated), EOT, then padding."""
        ids = []
        for w in pretokenize(text):
            if w in (SOT, EOT):
                ids.append(self.vocab[w])
            else:
                ids.extend(self.vocab[s] for s in self.bpe(w))
        ids = [self.sot] + ids[:self.max_length - 2] + [self.eot]
        return ids + [self.pad] * (self.max_length - len(ids))

    def write_files(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write("%s %s\n" % (a, b))
        added = {
            str(self.sot): {"content": SOT, "lstrip": False, "normalized": True,
                            "rstrip": False, "single_word": False, "special": True},
            str(self.eot): {"content": EOT, "lstrip": False, "normalized": False,
                            "rstrip": False, "single_word": False, "special": True},
        }
        cfg = {"add_prefix_space": False, "added_tokens_decoder": added, "bos_token": SOT,
               "clean_up_tokenization_spaces": True, "do_lower_case": True, "eos_token": EOT,
               "errors": "replace", "model_max_length": self.max_length, "pad_token": EOT,
               "tokenizer_class": "CLIPTokenizer", "unk_token": EOT}
        special = {
            "bos_token": {"content": SOT, "lstrip": False, "normalized": True,
                          "rstrip": False, "single_word": False},
            "eos_token": {"content": EOT, "lstrip": False, "normalized": False,
                          "rstrip": False, "single_word": False},
            "pad_token": EOT,
            "unk_token": {"content": EOT, "lstrip": False, "normalized": False,
                          "rstrip": False, "single_word": False},
        }
        for name, obj in (("tokenizer_config.json", cfg), ("special_tokens_map.json", special)):
            with open(os.path.join(folder, name), "w") as f:
                json.dump(obj, f, indent=2, sort_keys=True)
                f.write("\n")
