"""Tokenizer parity fixtures, written by Hugging Face `tokenizers` itself (tests/test_tokenizer_parity.cc reads them).

Two byte-level BPE tokenizers trained on a generated corpus (research/real-models.md §6), each saved as the
tokenizer.json a hub model ships:
  qwen   NFC normalizer; Sequence[Split(Regex(Qwen2), isolated), ByteLevel(add_prefix_space=False,
         use_regex=False)]; ByteLevel decoder; 512 tokens; special <|endoftext|>, <|im_start|>, <|im_end|>; one
         non-special added token "<tool_call>" and one normalized (matched after NFC) added token "한국".
  llama  no normalizer; the Llama-3 regex; ignore_merges; <|begin_of_text|> prepended by TemplateProcessing;
         special <|begin_of_text|>, <|end_of_text|>, <|eot_id|>; a non-special "<think>"; merges written as
         "a b" strings (the hub form; qwen keeps the ["a", "b"] pairs of tokenizers >= 0.20); and one vocabulary entry
         with no merge path (" zyzzyva", reachable only through ignore_merges).
  gpt2   qwen's vocabulary and merges behind GPT-2's pre-tokenizer (ByteLevel with use_regex=true: its built-in
         pattern) and no normalizer.

tests/fixtures/tokenizer/ holds:
  corpus.jsonl              one JSON string per line: the texts (>= 2000) every parity check and benchmark encodes
  <name>/tokenizer.json     the tokenizer
  expected_<name>.h5        ids int32 [total] and offsets int64 [lines + 1]: encode(text, add_special_tokens=True)
                            of every corpus line, as HF computes it

    scripts/install-deps.sh --python && .venv/bin/pip install tokenizers && \\
        .venv/bin/python bench/reference/tokenizer_fixtures.py
"""
import json
import os
import random

import h5py
import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_dir = os.path.join(root, "tests", "fixtures", "tokenizer")

QWEN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
        r"\s+(?!\S)|\s+")
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
NO_MERGE_WORD = " zyzzyva"
N_LINES = 2100

# ---- corpus ----

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up other "
         "about out many then them these so some her would make like him into time has look two more write go see "
         "number no way could people my than first water been call who oil its now find long down day did get come "
         "made may part tokenizer merge byte level regex stream decode encode policy reward gradient").split()
CONTRACTIONS = ["don't", "DON'T", "Don'T", "we'LL", "We'll", "it's", "IT'S", "they're", "THEY'RE", "I've", "i'VE",
                "I'm", "I'M", "she'd", "SHE'D", "you'll", "o'clock", "rock'n'roll", "'s", "'ſ", "'Ｓ"]
EMOJI = ["👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "👍🏿", "👍🏻", "🧑🏾‍🚀", "🇯🇵", "🇫🇷🇩🇪", "🇺🇸", "❤️", "😀😃😄", "🤷‍♀️",
         "🏴‍☠️", "✌🏼", "👋"]
SCRIPTS = ["中文字符和标点。", "你好，世界！", "東京都渋谷区", "ひらがなとカタカナ", "カタカナ", "한국어 텍스트", "안녕하세요",
           "مرحبا بالعالم", "السلام عليكم", "Ελληνικά γράμματα", "Русский текст", "עברית", "हिन्दी भाषा",
           "ภาษาไทย", "Tiếng Việt", "Việt Nam", "ｆｕｌｌｗｉｄｔｈ", "１２３４５", "٣٤٥٦"]
COMBINING = ["e\u0301", "cafe\u0301", "a\u0308", "n\u0303o", "A\u030a", "o\u0302\u0323", "\u1100\u1161\u11a8",
             "Å", "é", "ñ", "café", "re\u0301sume\u0301"]
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", " \t ", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\u00a0",
          "\u3000", "\u2028", "\u0085", "\u2029", "\u180e", "\u200b", "\u202f", "\u2003"]
DIGITS = ["1", "12", "123", "1234", "12345", "1234567", "3.14159", "1,000,000", "2024-01-31", "0x1F", "1e-6",
          "99.9%", "$42", "-7"]
PUNCT = [".", ",", "!", "?", "...", "--", "()", "[]", "{}", "\"", "'", ";", ":", "->", "=>", "==", "!=", "<=",
         "#", "@", "&&", "||", "/*", "*/", "//", "\\", "`", "~", "^", "%"]
CODE = ["def f(x):\n    return x + 1\n", "int main(void) {\n\treturn 0;\n}\n", "for i in range(10):\n  print(i)",
        "if (a && b) { c(); }", "x = [1, 2, 3]  # list", "SELECT * FROM t WHERE id = 7;", "<div class=\"a\">b</div>"]


def specials(name):
    if name == "qwen":
        return ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "한국"]
    return ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<think>"]


def fragment(rng, name):
    kind = rng.random()
    if kind < 0.30:
        return rng.choice(WORDS)
    if kind < 0.38:
        return rng.choice(CONTRACTIONS)
    if kind < 0.46:
        return rng.choice(EMOJI)
    if kind < 0.58:
        return rng.choice(SCRIPTS)
    if kind < 0.64:
        return rng.choice(COMBINING)
    if kind < 0.72:
        return rng.choice(DIGITS)
    if kind < 0.80:
        return rng.choice(PUNCT)
    if kind < 0.84:
        return rng.choice(CODE)
    if kind < 0.88:
        return rng.choice(specials(name))
    if kind < 0.90:
        return NO_MERGE_WORD.strip()
    if kind < 0.92:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randint(1, 4)))
    return rng.choice(WORDS).upper() if rng.random() < 0.5 else rng.choice(WORDS).capitalize()


def corpus():
    """Hand-written edge cases, then deterministic random mixtures of words, scripts, spaces and special tokens."""
    lines = [
        "Hello world", "DON'T we'LL they'RE I'M", "e\u0301 versus é", "1234567 and 12345678901", "   ",
        "trailing spaces   ", "\ttabs\t\tand  spaces  ", "line one\r\nline two\r\n", "a\u00a0b\u3000c\u2028d\u0085e",
        "👨‍👩‍👧‍👦 family 👩🏽‍💻 coder 🇯🇵🇫🇷 flags", "中文 日本語 한국어 العربية", "<|im_start|>user\nhi<|im_end|>\n",
        "<|begin_of_text|><|eot_id|> text <|end_of_text|>", "<tool_call>{}</tool_call>", "<think>\n\n</think>\n\n",
        "cafe\u0301 and café", "\u1112\u1161\u11ab\u1100\u116e\u11a8 and 한국", "zyzzyva" + NO_MERGE_WORD,
        NO_MERGE_WORD, "\u180e\u180e x \u180e", "", " ", "\n",
        "'s'S'ſ 'T's", "x" * 300, " " * 40 + "end", "١٢٣ ۴۵۶ １２３", "\r\r\n\n\r", "a \n b \n\n c",
    ]
    rng = random.Random(20250101)
    while len(lines) < N_LINES:
        name = "qwen" if len(lines) % 2 else "llama"
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(fragment(rng, name))
            parts.append(rng.choice(SPACES) if rng.random() < 0.35 else " ")
        s = "".join(parts)
        if rng.random() < 0.2:
            s = s.rstrip(" ")
        lines.append(s)
    return lines


# ---- tokenizers ----

def train(name, texts):
    tok = Tokenizer(models.BPE(ignore_merges=(name == "llama")))
    regex = QWEN if name == "qwen" else LLAMA3
    if name == "qwen":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    sp = specials(name)
    special = sp[:3]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Trained without the word that must have no merge path.
    tok.train_from_iterator([t for t in texts if NO_MERGE_WORD.strip() not in t], trainer)
    if name == "llama":
        # One entry no merge reaches: only ignore_merges can emit it (a whole pre-token found in the vocabulary).
        # Added before the added tokens, which take the ids after the model's vocabulary.
        j = json.loads(tok.to_str())
        vocab = j["model"]["vocab"]
        bl = "".join(bytes_to_unicode()[b] for b in NO_MERGE_WORD.encode())
        assert bl not in vocab
        vocab[bl] = 1 + max(vocab.values())
        tok = Tokenizer.from_str(json.dumps(j, ensure_ascii=False))
        bos = j["added_tokens"][0]
        assert bos["content"] == "<|begin_of_text|>"
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos["id"])])])
        tok.add_tokens([AddedToken("<think>", special=False, normalized=False)])
        j = json.loads(tok.to_str())
        j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]  # the hub's "a b" form
    else:
        tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                        AddedToken("한국", special=False, normalized=True)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        j = json.loads(tok.to_str())
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False)), j


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    os.makedirs(out_dir, exist_ok=True)
    texts = corpus()
    trained = {}
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    for name in ("qwen", "llama", "gpt2"):
        if name == "gpt2":
            j = json.loads(json.dumps(trained["qwen"]))
            j["normalizer"] = None
            j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                  "use_regex": True}
            tok = Tokenizer.from_str(json.dumps(j, ensure_ascii=False))
        else:
            tok, j = train(name, texts)
        trained[name] = j
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # what the C side reads
        ids, offsets = [], [0]
        for t in texts:
            e = tok.encode(t, add_special_tokens=True).ids
            norm = tok.normalizer.normalize_str(t) if tok.normalizer else t
            plain = tok.encode(t, add_special_tokens=False).ids
            assert tok.decode(plain, skip_special_tokens=False) == norm, (name, t)
            ids.extend(e)
            offsets.append(len(ids))
        if name == "llama":
            assert tok.encode(NO_MERGE_WORD, add_special_tokens=False).ids == [j["model"]["vocab"][
                "".join(bytes_to_unicode()[b] for b in NO_MERGE_WORD.encode())]]
        with h5py.File(os.path.join(out_dir, "expected_%s.h5" % name), "w") as g:
            g.create_dataset("ids", data=np.array(ids, dtype=np.int32), compression="gzip", shuffle=True)
            g.create_dataset("offsets", data=np.array(offsets, dtype=np.int64), compression="gzip", shuffle=True)
            g.attrs["tokenizers_version"] = __import__("tokenizers").__version__
        print("%s: %d lines, %d ids, vocab %d" % (name, len(texts), len(ids), tok.get_vocab_size()))


if __name__ == "__main__":
    main()
