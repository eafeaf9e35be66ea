"""make_tokenizer_fixtures.py - the T5 test tokenizer and the expected token ids of the corpus.

Runs where sentencepiece, tokenizers and transformers are installed (the GPU machine; no network
needed, everything is built from files in the repository):

    cd <repo> && python3 tools/reference/make_tokenizer_fixtures.py [--out DIR] [--keep-spm]

DIR defaults to tests/fixtures/tokenizers. It writes

DIR/t5/ - a small T5-style Unigram tokenizer. sentencepiece trains spiece.model (unigram, ~2000
  pieces, nmt_nfkc normalization, <pad>=0 </s>=1 <unk>=2, seeded, one thread) on a generated
  English + accents corpus; transformers' T5Tokenizer (T5TokenizerFast) converts it and
  save_pretrained writes tokenizer.json and tokenizer_config.json. spiece.model itself (268 KB,
  needed by no test) is written only with --keep-spm; the expectations below are computed from
  the folder as written.

DIR/expected.json - for every case of tokenizer_corpus.prompts(), the ids transformers gives the
  way diffusers' SD3 pipeline calls the tokenizers (padding="max_length", truncation=True,
  max_length 77 / 77 / 256):
    clip_l  CLIPTokenizer on tests/fixtures/tokenizers/clip_l (pads <|endoftext|>)
    clip_g  CLIPTokenizer on tests/fixtures/tokenizers/clip_g (pads "!")
    t5      T5TokenizerFast on DIR/t5
  stored without the padding (the pad id of each tokenizer is recorded once; the script checks
  that every padded position holds it). Three other references are compared and stored only where
  they differ:
    t5_file      tokenizers.Tokenizer.from_file(DIR/t5/tokenizer.json): the file's own pipeline,
                 which is what the C tokenizer implements
    t5_spm       sentencepiece itself (longest-match normalizer, not per grapheme cluster)
    clip_v4slow  transformers 4's Python CLIPTokenizer without ftfy (its BasicTokenizer drops
                 control/format characters and spaces out CJK), re-written here because
                 transformers 5 no longer ships it.

The CLIP folders (vocab.json, merges.txt: the real CLIP BPE data; configs as in SD3.5's tokenizer/
and tokenizer_2/) are inputs, not outputs.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import tokenizer_corpus  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")

# ---- training text for the T5 test tokenizer ----

_SYLL_C = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cr", "dr", "gr", "pl", "pr", "sh", "st", "th", "tr"]
_SYLL_V = ["a", "e", "i", "o", "u", "y", "ai", "ea", "ee", "ou", "oo", "é", "è", "à", "ü", "ö",
           "ä", "ñ", "ç", "ô", "î"]


def training_text(n_lines=12000, seed=1234):
    """Seeded sentences: corpus words, made-up syllable words, accents, digits, punctuation."""
    rng = random.Random(seed)
    words = tokenizer_corpus.WORDS
    lines = []
    for _ in range(n_lines):
        n = rng.randrange(3, 18)
        out = []
        for _ in range(n):
            r = rng.random()
            if r < 0.55:
                w = rng.choice(words)
            elif r < 0.9:
                n_syll = rng.randrange(1, 4)
                w = "".join(rng.choice(_SYLL_C) + rng.choice(_SYLL_V) for _ in range(n_syll))
            else:
                w = str(rng.randrange(0, 10000))
            if rng.random() < 0.15:
                w = w.capitalize()
            out.append(w)
            if rng.random() < 0.12:
                out.append(rng.choice([",", ".", "!", "?", ";", ":", "-", "(", ")", "'"]))
        lines.append(" ".join(out))
    return "\n".join(lines) + "\n"


def train_t5(out_dir, tmp, keep_spm):
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    corpus = os.path.join(tmp, "train.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(training_text())
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(7)
    spm_dir = os.path.join(tmp, "spm")
    os.makedirs(spm_dir)
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=os.path.join(spm_dir, "spiece"), model_type="unigram",
        vocab_size=2000, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", add_dummy_prefix=True, remove_extra_whitespaces=True,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
        minloglevel=2)
    t5_dir = os.path.join(out_dir, "t5")
    if os.path.isdir(t5_dir):
        shutil.rmtree(t5_dir)
    tok = T5TokenizerFast.from_pretrained(spm_dir, model_max_length=512, extra_ids=100)
    tok.save_pretrained(t5_dir)
    for name in os.listdir(t5_dir):
        if name not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(t5_dir, name))  # only what the C tokenizer reads stays
    spm_path = os.path.join(spm_dir, "spiece.model")
    if keep_spm:
        shutil.copy(spm_path, os.path.join(t5_dir, "spiece.model"))
    for name in sorted(os.listdir(t5_dir)):
        print("  t5/%s %d bytes" % (name, os.path.getsize(os.path.join(t5_dir, name))))
    with open(spm_path, "rb") as f:
        return t5_dir, f.read()


# ---- transformers 4's slow CLIPTokenizer (without ftfy), for comparison only ----

def _bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
          + list(range(0xAE, 0xFF + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class V4SlowClip:
    """The v4 algorithm: added-token split, BasicTokenizer clean-up, the CLIP regex, rank BPE."""

    def __init__(self, folder, added):
        import regex
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.byte_enc = _bytes_to_unicode()
        self.added = sorted(added, key=len, reverse=True)
        self.pat = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"
                                 r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)

    @staticmethod
    def _basic(text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            if ch in "\t\n\r" or ch == " " or unicodedata.category(ch) == "Zs":
                out.append(" ")
                continue
            if unicodedata.category(ch).startswith("C"):
                continue
            if (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                    or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F
                    or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
                    or 0x2F800 <= cp <= 0x2FA1F):
                out.append(" " + ch + " ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFC", "".join(out))
        return " ".join(t.lower() for t in text.split())

    def _bpe(self, token):
        if token in ("<|startoftext|>", "<|endoftext|>"):
            return [token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return list(word)

    def _chunk(self, text):
        ids = []
        for tok in self.pat.findall(self._basic(text)):
            mapped = "".join(self.byte_enc[b] for b in tok.encode("utf-8"))
            unk = self.encoder["<|endoftext|>"]
            ids.extend(self.encoder.get(p, unk) for p in self._bpe(mapped))
        return ids

    def encode(self, text, max_length):
        """bos + ids + eos truncated to max_length, without padding."""
        ids, i, start = [], 0, 0
        while i < len(text):
            hit = next((a for a in self.added if text.startswith(a, i)), None)
            if hit is None:
                i += 1
                continue
            ids.extend(self._chunk(text[start:i]))
            ids.append(self.encoder[hit])
            i += len(hit)
            start = i
        ids.extend(self._chunk(text[start:]))
        bos, eos = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        return [bos] + ids[:max_length - 2] + [eos]


# ---- the expectations ----

def unpad(ids, mask, pad_id, label):
    n = sum(mask)
    assert list(mask) == [1] * n + [0] * (len(mask) - n), label + ": attention mask is not a prefix"
    assert all(x == pad_id for x in ids[n:]), label + ": padding is not the pad id"
    return list(ids[:n])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES, help="output folder (default: %(default)s)")
    ap.add_argument("--keep-spm", action="store_true", help="also write t5/spiece.model")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import sentencepiece as spm
    import tokenizers
    import transformers
    from transformers import CLIPTokenizer, T5TokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        t5_dir, spm_bytes = train_t5(args.out, tmp, args.keep_spm)

    clip = {}
    for name in ("clip_l", "clip_g"):
        clip[name] = CLIPTokenizer.from_pretrained(os.path.join(FIXTURES, name))
    t5 = T5TokenizerFast.from_pretrained(t5_dir)
    t5_file = tokenizers.Tokenizer.from_file(os.path.join(t5_dir, "tokenizer.json"))
    t5_file.enable_truncation(max_length=256)
    t5_file.enable_padding(length=256, pad_id=0, pad_token="<pad>")
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)

    pads = {"clip_l": clip["clip_l"].pad_token_id, "clip_g": clip["clip_g"].pad_token_id,
            "t5": t5.pad_token_id}
    assert pads == {"clip_l": 49407, "clip_g": 0, "t5": 0}, pads
    v4 = V4SlowClip(os.path.join(FIXTURES, "clip_l"), ["<|startoftext|>", "<|endoftext|>"])

    check = clip["clip_l"]("a photo of a cat")["input_ids"]
    assert check == [49406, 320, 1125, 539, 320, 2368, 49407], check

    cases = []
    diff = {"t5_file": 0, "t5_spm": 0, "clip_v4slow": 0, "clip_l_vs_clip_g": 0}
    for c in tokenizer_corpus.prompts():
        text = c["text"]
        rec = {"text": text}
        if "bytes" in c:
            rec["hex"] = c["bytes"].hex()
        for name, tok in clip.items():
            enc = tok(text, padding="max_length", max_length=77, truncation=True)
            rec[name] = unpad(enc["input_ids"], enc["attention_mask"], pads[name], name)
        enc = t5(text, padding="max_length", max_length=256, truncation=True,
                 add_special_tokens=True)
        rec["t5"] = unpad(enc["input_ids"], enc["attention_mask"], 0, "t5")
        e = t5_file.encode(text)
        ids = unpad(e.ids, e.attention_mask, 0, "t5_file")
        if ids != rec["t5"]:
            rec["t5_file"] = ids
            diff["t5_file"] += 1
        ids = sp.encode(text)[:255] + [1]
        if ids != rec["t5"]:
            rec["t5_spm"] = ids
            diff["t5_spm"] += 1
        ids = v4.encode(text, 77)
        if ids != rec["clip_l"]:
            rec["clip_v4slow"] = ids
            diff["clip_v4slow"] += 1
        if rec["clip_l"] != rec["clip_g"]:
            diff["clip_l_vs_clip_g"] += 1
        cases.append(rec)

    doc = {
        "generator": "tools/reference/make_tokenizer_fixtures.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "sentencepiece": spm.__version__, "python": sys.version.split()[0],
                     "unicodedata": unicodedata.unidata_version},
        "tokenizers": {
            "clip_l": {"dir": "clip_l", "max_length": 77, "pad_id": pads["clip_l"]},
            "clip_g": {"dir": "clip_g", "max_length": 77, "pad_id": pads["clip_g"]},
            "t5": {"dir": "t5", "max_length": 256, "pad_id": pads["t5"]},
        },
        "differences": diff,
        "cases": cases,
    }
    path = os.path.join(args.out, "expected.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("%d cases -> %s (%d bytes)" % (len(cases), path, os.path.getsize(path)))
    print("differences from the transformers ids:", json.dumps(diff))


if __name__ == "__main__":
    main()
