"""Chat template parity fixtures, rendered by transformers' own apply_chat_template (tests/test_chat_template.cc reads
them).

The real Jinja templates (tests/fixtures/chat/templates/, sources in SOURCES.md there) render a committed set of
conversations with add_generation_prompt=True, as verl and TRL call it, once as text (tokenize=False) and once as ids
(tokenize=True, which encodes with add_special_tokens=False) on a fixture tokenizer that has the template's tokens:

  template        Jinja file                               tokenizer                         extra arguments
  chatml          chatml.jinja                             tokenizer/qwen                    -
  qwen2           Qwen-Qwen2-7B-Instruct.jinja             tokenizer/qwen                    -
  qwen2.5         Qwen-Qwen2.5-7B-Instruct.jinja           tokenizer/qwen                    -
  qwen3           Qwen-Qwen3-0.6B.jinja                    chat/qwen3                        enable_thinking=True
  qwen3:nothink   Qwen-Qwen3-0.6B.jinja                    chat/qwen3                        enable_thinking=False
  llama3          meta-llama-Llama-3.2-3B-Instruct.jinja   chat/llama3 (bos <|begin_of_text|>) date_string

Two tokenizers are derived from tests/fixtures/tokenizer/ (left unchanged) by appending added tokens, as the real
models have them: chat/llama3 adds <|start_header_id|> and <|end_header_id|> (special) to the llama fixture;
chat/qwen3 adds <think> and </think> (not special) to the qwen fixture.

tests/fixtures/chat/ holds:
  conversations.jsonl   one conversation per line: {"name", "messages": [{"role", "content"}, ...]}
  expected.jsonl        one line per (conversation, template): {"conversation" (0-based line), "template",
                        "tokenizer" (a directory under tests/fixtures), "date" (llama3's date_string; null where the
                        default "26 Jul 2024" was passed), "text", "ids"}
  llama3/, qwen3/       the derived tokenizer.json files

    scripts/install-deps.sh --python && .venv/bin/pip install transformers tokenizers jinja2 && \\
        .venv/bin/python bench/reference/chat_template_fixtures.py
"""
import json
import os

import jinja2
import tokenizers
import transformers
from transformers import PreTrainedTokenizerFast

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
fix = os.path.join(root, "tests", "fixtures")
out_dir = os.path.join(fix, "chat")
tpl_dir = os.path.join(out_dir, "templates")

DEFAULT_DATE = "26 Jul 2024"  # Llama-3.1's fallback; 3.2's template writes today's date under transformers

S, U, A = "system", "user", "assistant"


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    ("single user prompt", [m(U, "What is 2 + 3?")]),
    ("system and user", [m(S, "You are a careful math tutor."), m(U, "Solve x^2 = 4.")]),
    ("empty system", [m(S, ""), m(U, "Hello")]),
    ("multi-turn with system", [m(S, "Answer briefly."), m(U, "Hi"), m(A, "Hello! How can I help?"),
                                m(U, "What is 7 * 6?")]),
    ("multi-turn without system", [m(U, "Count to three."), m(A, "1, 2, 3"), m(U, "Now backwards.")]),
    ("unicode", [m(S, "Réponds en français 🇫🇷."), m(U, "中文 日本語 한국어 مرحبا 👨‍👩‍👧‍👦 café e\u0301 Ελληνικά")]),
    ("spaces and newlines around content", [m(S, " \t Be terse. \n"), m(U, "\n\n  Leading and trailing  \n "),
                                            m(A, "  ok  "), m(U, "inner\n\nnewlines kept\n")]),
    ("unicode white space at the ends", [m(U, "\u3000\u00a0\u2028wide\u0085 \u2003"),
                                         m(A, "\u200bzero width stays\u200b\u180e"),
                                         m(U, "\x1c\x1ffile seps\x1e\x1d")]),
    ("special-token strings in content", [m(S, "Never say <|im_end|>."),
                                          m(U, "<|im_start|>user\nfake<|im_end|> and <|eot_id|><|start_header_id|>"
                                               "x<|end_header_id|> and <|begin_of_text|>")]),
    ("assistant with reasoning after the last user", [m(U, "Think first."), m(A, "<think>\nstep 1\nstep 2\n</think>"
                                                                                  "\n\nThe answer is 4.")]),
    ("reasoning in history", [m(U, "Q1"), m(A, "<think>\nold thoughts\n</think>\n\nA1"), m(U, "Q2"),
                              m(A, "<think>\n\nnew thoughts\n\n</think>\n\n\nA2"), m(U, "Q3")]),
    ("close think tag only", [m(U, "Q"), m(A, "no open tag</think>\nrest"), m(A, "</think>")]),
    ("tool response shaped user turn", [m(U, "Look it up."), m(A, "<think>plan</think>Calling."),
                                        m(U, "<tool_response>\n42\n</tool_response>")]),
    ("system message in the middle", [m(U, "First"), m(A, "Reply"), m(S, "New rules: be brief."), m(U, "Second")]),
    ("empty user", [m(U, "")]),
    ("white space only", [m(S, "   "), m(U, " \n\t ")]),
    ("code and math", [m(S, "You solve problems step by step. Put the final answer in \\boxed{}."),
                       m(U, "def f(x):\n    return x + 1\n\nWhat is f(41)? $\\frac{1}{2}$ and 1,000,000.")]),
    ("crlf", [m(U, "line one\r\nline two\r\n")]),
    ("assistant last", [m(U, "Say hi."), m(A, "hi")]),
]

TEMPLATES = [
    # name, Jinja file, tokenizer directory (under tests/fixtures), extra kwargs
    ("chatml", "chatml.jinja", "tokenizer/qwen", {}),
    ("qwen2", "Qwen-Qwen2-7B-Instruct.jinja", "tokenizer/qwen", {}),
    ("qwen2.5", "Qwen-Qwen2.5-7B-Instruct.jinja", "tokenizer/qwen", {}),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja", "chat/qwen3", {"enable_thinking": True}),
    ("qwen3:nothink", "Qwen-Qwen3-0.6B.jinja", "chat/qwen3", {"enable_thinking": False}),
    ("llama3", "meta-llama-Llama-3.2-3B-Instruct.jinja", "chat/llama3", {}),
]


def derive(src, dst, tokens):
    """src's tokenizer.json with `tokens` [(content, special)] appended as added tokens (ids after the largest)."""
    with open(os.path.join(fix, src, "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    next_id = 1 + max(max(j["model"]["vocab"].values()), max(t["id"] for t in j["added_tokens"]))
    for content, special in tokens:
        j["added_tokens"].append({"id": next_id, "content": content, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": special})
        next_id += 1
    d = os.path.join(out_dir, dst)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
    tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # loads


def main():
    derive("tokenizer/llama", "llama3", [("<|start_header_id|>", True), ("<|end_header_id|>", True)])
    derive("tokenizer/qwen", "qwen3", [("<think>", False), ("</think>", False)])
    with open(os.path.join(out_dir, "conversations.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for name, msgs in CONVERSATIONS:
            f.write(json.dumps({"name": name, "messages": msgs}, ensure_ascii=False) + "\n")
    toks = {}
    lines = []
    for tname, tfile, tokdir, kwargs in TEMPLATES:
        with open(os.path.join(tpl_dir, tfile), encoding="utf-8") as f:
            template = f.read()
        if tokdir not in toks:
            extra = {"bos_token": "<|begin_of_text|>"} if tokdir == "chat/llama3" else {}
            toks[tokdir] = PreTrainedTokenizerFast(tokenizer_file=os.path.join(fix, tokdir, "tokenizer.json"),
                                                   **extra)
        tok = toks[tokdir]
        for i, (name, msgs) in enumerate(CONVERSATIONS):
            kw = dict(kwargs)
            date = None
            if tname == "llama3":
                date = "03 Mar 2025" if i % 2 else None  # half with another pinned date, half with the default
                kw["date_string"] = date or DEFAULT_DATE
            text = tok.apply_chat_template(msgs, chat_template=template, add_generation_prompt=True,
                                           tokenize=False, **kw)
            enc = tok.apply_chat_template(msgs, chat_template=template, add_generation_prompt=True, tokenize=True,
                                          **kw)
            ids = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
            assert ids == tok.encode(text, add_special_tokens=False), (tname, name)
            lines.append({"conversation": i, "template": tname, "tokenizer": tokdir, "date": date, "text": text,
                          "ids": ids})
    with open(os.path.join(out_dir, "expected.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print("%d conversations x %d templates = %d renderings (transformers %s, jinja2 %s, tokenizers %s)" % (
        len(CONVERSATIONS), len(TEMPLATES), len(lines), transformers.__version__, jinja2.__version__,
        tokenizers.__version__))


if __name__ == "__main__":
    main()
