#!/usr/bin/env python3
"""gen_tokenizer_vectors.py -- reference token ids from llama.cpp for tests/test_tokenizer.c.

Runs llama.cpp's tokenizer (through llama-cpp-python, vocab only) over a fixed
list of texts plus seeded random Unicode strings, and writes one case per line:

    <add_bos> <parse_special> <text as hex UTF-8> : <id> <id> ...

preceded by a '#' line showing the text. Only valid UTF-8 is used: llama.cpp
replaces invalid bytes by U+FFFD, where longkv keeps the bytes (documented in
src/model/tokenizer.h), so those inputs are tested separately.

Usage (llama-cpp-python installed in the interpreter that runs this):
  python scripts/gen_tokenizer_vectors.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
      > tests/data/tokenizer_smollm2.txt
"""
import random
import subprocess
import sys

from llama_cpp import Llama

FIXED = [
    "", " ", "  ", "\n", "\n\n", "\t", "a", "Hello world", "Hello, world!", " Hello", "hello  world",
    "Hello   world  ", "The quick brown fox jumps over the lazy dog.",
    "I'm here, you're there, it's fine; we've done what they'd do and I'll go.",
    "I'M LOUD; DON'T SHOUT", "'s 't 're 've 'm 'll 'd", "rock'n'roll", "''quoted''",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000 dollars",
    "a1b2c3", "x 1 2  3   4", "-42", "+7e10", "0x1F", "٣٤٥ ١٢", "１２３ full", "²³ ½ Ⅻ",
    "café naïve résumé", "Ünïcödé Ωμέγα Привет мир", "日本語のテキスト、中文文本。", "한국어 텍스트",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇩🇪", "tab\tsep\tvalues", "line1\nline2\r\nline3",
    "    indented code\n        more", "trailing spaces   ", "   leading", "\n\n\nthree newlines",
    "a \n b", "x\u00a0y\u2003z\u3000w", "zero\u200bwidth", "ctrl\x01\x1c\x7f chars",
    "combining e\u0301 a\u0308", "math ∑∫√∞ ≤ ≥ ≠", "arrows → ← ↑", "quotes “smart” ‘single’",
    "dashes – — …", "<html><body class=\"x\">hi</body></html>",
    "def f(x):\n    return x**2  # square\n", "int main(void) { return 0; }",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "$100 + 20% = ^~|<>",
    "<|im_start|>user\nHi<|im_end|>", "<|im_start|>assistant\n", "<|endoftext|>",
    "<|im_start|><|im_end|>", "text<|im_end|>more", "<|im_start", "<|im_end|><|im_end|>",
    "<repo_name>x<file_sep>y", "<jupyter_code>print(1)", "not <special> token",
    "Ġ ĉ Ċ", "ĠĠĠ", "\u0100\u0120", "\U0001F600" * 5, "a" * 300, " " * 50 + "x", "\n" * 20,
    "!!!???...", "....", "--- ___ ***", "#$%&", "¡¿", "©®™", "\u00ad soft hyphen",
    "mixed123abc456", "CamelCaseIdentifier", "snake_case_name", "ALLCAPS", "x²+y²=z²",
    "a\x04b", "x\x13\x14y\x1d", "\U00040000x", "\U000F0000 private",
    "Ελληνικά: αβγδε", "עברית", "العربية ١٢٣", "हिन्दी", "ไทย", "ქართული", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    # Gemma's control tokens and SentencePiece whitespace
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>x<eos>", "<pad>",
    "\u2581word \u2581\u2581", "a  b   c    d\t\te\n \n  \n",
]

# Characters drawn for random strings: a bit of every script and category.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789", "     ", "\n\t\r", ".,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`",
    "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿĀāĂăĄąŒœŠšŸ", "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВ", "的一是不了人我在有他这为之大来以个中上们",
    "あいうえおかきくけこアイウエオ", "가나다라마바사", "٠١٢٣٤٥٦٧٨٩", "०१२३", "０１２３ＡＢＣ",
    "😀😃😄😁😆🎉👍🚀🔥💯", "\u0300\u0301\u0302\u0308\u0327", "\u00a0\u2000\u2003\u3000\u0085\u2028",
    "\u200b\u200c\u200d\ufeff", "€£¥©®°±²³µ¶·¼½¾×÷", "∀∂∃∅∇∈∉∑−∗√∝∞∠∧∨∩∪∫",
    "\x00\x01\x07\x1b\x1c\x1f\x7f", "\U00010348\U0001D400\U0001F9E0\U00020000\U000E0001",
    "ĠĊĉ", "'s't're've'm'll'd",
]


def random_text(rng):
    n = rng.randint(1, 40)
    out = []
    for _ in range(n):
        pool = rng.choice(POOLS)
        out.append(rng.choice(pool) * (rng.choice([1, 1, 1, 2, 3])))
    return "".join(out)


def long_text():
    try:
        txt = subprocess.run(["bible", "-f", "gen1:1-gen3:24"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        txt = ""
    return txt or ("In the beginning God created the heaven and the earth. " * 200)


def main():
    llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
    rng = random.Random(20261122)
    cases = []
    for s in FIXED:
        cases.append((0, 0, s))
        cases.append((0, 1, s))
    for _ in range(300):
        cases.append((0, rng.randint(0, 1), random_text(rng)))
    cases.append((1, 1, "<|im_start|>system\nYou are helpful.<|im_end|>\n"))
    cases.append((0, 0, long_text()))
    out = sys.stdout
    out.write("# token ids from llama.cpp (llama-cpp-python) for %s\n" % sys.argv[1].split("/")[-1])
    out.write("# format: add_bos parse_special hex(utf8 text) : ids\n")
    for add_bos, special, s in cases:
        b = s.encode("utf-8")
        ids = llm.tokenize(b, add_bos=bool(add_bos), special=bool(special))
        out.write("# %s\n" % ascii(s)[:200])
        out.write("%d %d %s : %s\n" % (add_bos, special, b.hex() or "-", " ".join(map(str, ids))))


if __name__ == "__main__":
    main()
