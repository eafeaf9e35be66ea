"""tokenizer_corpus.py - the prompt corpus the tokenizer tests compare against the reference.

`prompts()` returns a deterministic list of test cases, each a dict:
    {"text": str}                 a prompt (valid Unicode, no NUL: the C API takes C strings), or
    {"bytes": bytes, "text": str} raw bytes that are not valid UTF-8, with "text" their lossy
                                  decoding (bytes.decode("utf-8", "replace"): every maximal invalid
                                  subsequence becomes U+FFFD, as Rust's String::from_utf8_lossy and
                                  the C tokenizer do).
The cases cover what SD prompts contain and what breaks tokenizers: punctuation, digits, accents
(precomposed and decomposed), CJK, emoji sequences, HTML entities, runs of spaces, tabs and
newlines, control and format characters, special-token look-alikes, apostrophes, mixed case,
prompts far over 77 and 256 tokens, the empty prompt, and ~200 seeded random prompts.

Run directly, it writes a sample of the cases as seed files for the libFuzzer target:
    /usr/bin/python3 tools/reference/tokenizer_corpus.py [--seeds tests/fuzz/corpus/tokenizer]
make_tokenizer_fixtures.py imports it to build tests/fixtures/tokenizers/expected.json.
"""
import argparse
import os
import random

HAND = [
    "",
    " ",
    "   ",
    "\t\n",
    "a photo of a cat",
    "A photo of a cat",
    "a photo of an astronaut riding a horse on mars",
    "A cinematic photo of a red fox in the snow, golden hour, 85mm, bokeh, highly detailed",
    "masterpiece, best quality, ultra-detailed, 8k, (extremely detailed CG unity 8k wallpaper)",
    "(masterpiece:1.2), [lowres], {a|b}, <lora:style:0.8>",
    "portrait of a woman, oil on canvas, by Rembrandt and Vermeer --ar 16:9 --v 5",
    "cute cat",
    "hello world",
    "Hello, World!",
    "HELLO WORLD",
    "HeLLo WoRLD",
    "hello!!!",
    "wow!!! amazing!",
    "!",
    "!!",
    "! ! !",
    "what?!",
    "...",
    "a...b",
    "end.",
    "ellipsis\u2026 here",
    "----",
    "a-b-c",
    "snake_case_word",
    "CamelCaseWord",
    "don't",
    "Don't stop",
    "it's a dog's life",
    "we're here, they've gone, I'll stay, she'd go, I'm fine",
    "I'M SHOUTING, YOU'LL HEAR",
    "O'Neil's pub",
    "rock 'n' roll",
    "'quoted'",
    "''",
    "'s",
    "it\u2019s curly",
    "\u201csmart quotes\u201d and \u2018single\u2019",
    "\u00abguillemets\u00bb",
    "\u00bfQu\u00e9 pasa? \u00a1Hola!",
    "1234567890",
    "3.14159",
    "$100 and 50% off",
    "1,000,000 people",
    "4k 8k uhd 1080p 60fps",
    "2024-01-15 12:30:45",
    "H2O and CO\u2082",
    "x\u00b2 + y\u00b2 = z\u00b2",
    "\u00bd cup, \u00bc mile",
    "\u2160 \u2161 \u216b",
    "\u2116 5",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "e\u0301\u0302 o\u0308\u0301",
    "\u00c5ngstr\u00f6m \u00dcber Stra\u00dfe",
    "A\u030angstro\u0308m",
    "fa\u00e7ade co\u00f6perate",
    "S\u00e3o Paulo, Bras\u00edlia",
    "\u0141\u00f3d\u017a, Krak\u00f3w, \u017b\u00f3\u0142w",
    "\u0130stanbul \u0131\u015f\u0131k",
    "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2",
    "\u03a3\u03a3\u03a3",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0915\u094d\u0937",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\u4e00\u53ea\u732b\u5728\u8349\u5730\u4e0a",
    "\u732b",
    "a\u732bb",
    "cat \u732b dog \u72d7",
    "\u732b\u304c\u597d\u304d\u3067\u3059",
    "\u30ab\u30bf\u30ab\u30ca \uff76\uff9e\uff77\uff9e",
    "\uace0\uc591\uc774",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "\uff21\uff22\uff23\uff11\uff12\uff13",
    "\uff48\uff45\uff4c\uff4c\uff4f\uff01",
    "\ufb01ne \ufb02ow",
    "\u2122 \u00a9 \u00ae",
    "\u2211 \u222b \u221a \u221e \u2248",
    "\u2190 \u2192 \u2191 \u2193",
    "\u2500\u2502\u250c\u2510",
    "\U0001f431",
    "\U0001f431\U0001f680\U0001f44d",
    "\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\U0001f1eb\U0001f1f7 \U0001f1ef\U0001f1f5",
    "\u2764\ufe0f love",
    "\u00a9\ufe0f",
    "1\ufe0f\u20e3",
    "a\u20dd",
    "a cat \U0001f431 on a mat",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &#39;x&#39; &quot;q&quot; &nbsp;",
    "<b>bold</b> <i>italic</i>",
    "a     b",
    "a  b   c    d",
    "   leading spaces",
    "trailing spaces   ",
    "a\tb\tc",
    "line1\nline2\n\nline3",
    "windows\r\nline",
    "mixed \t \n \r\n spaces",
    "a\u00a0b",
    "a\u3000b",
    "a\u2003b\u2009c",
    "a\u200bb",
    "a\u200cb\u200dc",
    "\ufeffbom start",
    "soft\u00adhyphen",
    "bell\u0007char",
    "esc\u001b[0m",
    "del\u007fchar",
    "a\u001cb\u001fc",
    "a\u0085b",
    "a\u2028b\u2029c",
    "\ufffd replacement",
    "<|endoftext|>",
    "<|startoftext|>",
    "a <|endoftext|> b",
    "hello<|endoftext|>world",
    "<|startoftext|>hello<|endoftext|>",
    "<|ENDOFTEXT|>",
    "<|StartOfText|> x",
    "<|endoftext",
    "</s>",
    "a </s> b",
    "<pad><pad>",
    "<unk>",
    "<extra_id_0> and <extra_id_99>",
    "<s>",
    "\u2581already\u2581metaspace",
    "\u2581",
    "https://example.com/path?a=1&b=2#frag",
    "user@example.com",
    "#hashtag @mention",
    "def f(x): return x**2",
    "**bold** _italic_ `code`",
    "C:\\Users\\name\\file.txt",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100,
    "abababababababababababababababababababababababab",
    "a" * 400,
    "!" * 90,
    "." * 300,
    "0123456789" * 20,
    "\u732b" * 100,
    "\U0001f431" * 100,
    "the " * 100,
    "a " * 300,
]

LONG_SENTENCES = [
    "A breathtaking landscape of rolling hills under a dramatic sky, with a winding river "
    "reflecting the last light of the sunset, painted in the style of the Hudson River School, "
    "ultra detailed, volumetric lighting, trending on artstation, award winning photograph, "
    "sharp focus, 8k resolution. ",
    "Une rue pavée de Paris à l'aube, des cafés fermés, la brume légère sur la Seine, "
    "une bicyclette appuyée contre un réverbère ancien, photographie argentique, grain fin. ",
    "Ein gemütliches Holzhaus im verschneiten Wald, Rauch steigt aus dem Schornstein, "
    "warmes Licht in den Fenstern, Märchenstimmung, äußerst detailliert. ",
]

WORDS = (
    "a an the of in on at with and or but cat dog fox horse astronaut castle forest river mountain "
    "city street portrait landscape painting photo photograph render illustration sketch "
    "watercolor "
    "oil canvas light shadow sunset sunrise night day golden blue red green purple orange silver "
    "ancient futuristic cyberpunk steampunk baroque minimalist cinematic dramatic soft sharp "
    "detailed intricate beautiful huge tiny glowing neon misty rainy snowy dusty "
    "café naïve résumé façade jalapeño Zürich Ærø smörgåsbord crème brûlée "
    "piñata über "
    "Straße Ångström déjà-vu coöperate señor mañana Łódź Kraków İstanbul "
    "don't it's we're they've I'll she'd I'm you're "
    "4k 8k 35mm 85mm f/1.8 1080p 3D 2.5D x2 v5 sd3.5 "
    "HDR UHD DSLR RAW CGI AI NASA"
).split()

PUNCT = [",", ".", "!", "?", ";", ":", "-", "--", "...", "(", ")", "[", "]", "{", "}", "\"", "'",
         "/", "&", "#", "@", "*", "+", "=", "<", ">", "|", "~", "^", "%", "$", "_", "`", "\\"]

SPACES = [" ", " ", " ", " ", " ", "  ", "   ", "\t", "\n", " \n ", "\u00a0", "\u3000"]

# Characters that exercise Unicode handling: combining marks, CJK, kana, Hangul, emoji parts
# (modifiers, ZWJ, variation selectors, regional indicators), fullwidth forms, ligatures,
# controls and format characters, symbols, digits of other scripts.
EXOTIC = (
    "\u0301\u0308\u0327\u0303\u20dd\u20e3"
    "\u732b\u72d7\u5c71\u6c34\u4e2d\u6587\u3042\u30a2\uff76\uff9e\uac00\u1100\u1161\u11a8"
    "\U0001f431\U0001f680\U0001f3fd\u200d\ufe0f\U0001f1eb\U0001f1f7\u2764\U0001f308"
    "\uff21\uff41\uff11\ufb01\u2126\u212b\u00b2\u00bd\u2160"
    "\u0007\u001b\u007f\u00ad\u200b\u200c\u2028\ufeff\ufffd"
    "\u00e9\u00df\u00c5\u0130\u03a3\u0416\u05d0\u0627\u0939\u094d\u0e01"
    "\u0660\u0967\u2122\u00a9\u221e\u2192\u2500"
)

INVALID_UTF8 = [
    b"\xff",
    b"abc\xc3",
    b"caf\xe9 au lait",
    b"\xed\xa0\x80 surrogate",
    b"\xe2\x82 truncated euro",
    b"\xf0\x9f\x90 truncated cat \xf0\x9f\x90\xb1",
    b"\xc0\xaf overlong slash",
    b"\xf8\x88\x80\x80\x80 five bytes",
    b"a\x80b\xbfc",
    b"\xf4\x90\x80\x80 above U+10FFFF",
]


def _random_prompt(rng):
    kind = rng.randrange(6)
    n = rng.randrange(1, 40)
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.65:
            w = rng.choice(WORDS)
            c = rng.random()
            if c < 0.1:
                w = w.upper()
            elif c < 0.2:
                w = w.capitalize()
            parts.append(w)
        elif r < 0.85:
            parts.append(rng.choice(PUNCT))
        elif r < 0.92:
            parts.append(str(rng.randrange(0, 10 ** rng.randrange(1, 7))))
        else:
            parts.append("".join(rng.choice(EXOTIC) for _ in range(rng.randrange(1, 5))))
    out = []
    for p in parts:
        out.append(p)
        if kind == 0 or rng.random() < 0.8:
            out.append(rng.choice(SPACES) if kind == 1 else " ")
    text = "".join(out)
    if kind == 2:
        text = text.strip()
    if kind == 3:
        text = "  " + text + "\n"
    if kind == 4:
        text = "".join(ch.upper() if rng.random() < 0.3 else ch for ch in text)
    return text


def prompts():
    """The whole corpus, in a fixed order (see the module comment for the case format)."""
    cases = [{"text": t} for t in HAND]
    for s in LONG_SENTENCES:
        cases.append({"text": s * 2})
        cases.append({"text": s * 8})
    cases.append({"text": " ".join(LONG_SENTENCES) * 4})
    cases.append({"text": ("\u732b\u304c\u597d\u304d " * 80).strip()})
    rng = random.Random(20240607)
    for _ in range(200):
        cases.append({"text": _random_prompt(rng)})
    for b in INVALID_UTF8:
        cases.append({"bytes": b, "text": b.decode("utf-8", "replace")})
    for c in cases:
        assert "\x00" not in c["text"]
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="tests/fuzz/corpus/tokenizer",
                    help="folder for the libFuzzer seed files")
    args = ap.parse_args()
    os.makedirs(args.seeds, exist_ok=True)
    cases = prompts()
    # Every 8th case plus all the invalid ones: enough variety to start from, few files.
    picked = [c for i, c in enumerate(cases) if i % 8 == 0 or "bytes" in c]
    for i, c in enumerate(picked):
        data = c.get("bytes", c["text"].encode("utf-8"))
        with open(os.path.join(args.seeds, "seed_%03d" % i), "wb") as f:
            f.write(data)
    print("%d cases, %d seeds in %s" % (len(cases), len(picked), args.seeds))


if __name__ == "__main__":
    main()
