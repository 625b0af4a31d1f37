"""Parity fixtures for the text rewards (data/text_reward.c), scored by verl's and TRL's own reward code.

tests/test_text_reward.cc reads tests/fixtures/rewards/cases.jsonl: a first line of provenance ({"meta": ...}), then
one case a line: {"reward": name, "response": text, "answer": text, "score": what the peer returns, "note": why}:
hand-written cases (the peers' own examples, then edge cases of every rule), then --random seeded random ones per
reward built from the pieces the rules react to.
gsm8k cases may carry "format_score" and "score_value" (verl's compute_score arguments; defaults 0.0 and 1.0).

The peer functions, each loaded from its own .py file by path (they import only `re` and `typing`, so neither verl
nor TRL needs to be installed, and importing the packages would pull in torch):
  gsm8k, gsm8k_flexible  verl/utils/reward_score/gsm8k.py       compute_score(method="strict" / "flexible")
  math                   verl/utils/reward_score/math_reward.py compute_score
  answer_tag             verl/utils/reward_score/math_dapo.py   compute_score(...)["score"]
  think_format           trl/rewards/format_rewards.py          think_format_reward
  exact                  Python's own str.strip() and ==, the definition data/text_reward.h gives

Sources: a checkout of each (or an unpacked wheel: `pip download --no-deps verl trl` and unzip), e.g.

    git clone https://github.com/volcengine/verl && git clone https://github.com/huggingface/trl
    python3 bench/reference/reward_fixtures.py --verl verl --trl trl

The fixtures were made from verl b178a3cd56f58b2d502255daba591e92833930a7 (0.8.0.dev) and TRL
f2cd57710ae345ea6428ae95363267fcf38a3dc8 with CPython 3.11 (Unicode 14.0): str.isdigit, str.strip and int()'s
4300-digit limit follow the interpreter, so a different one may move the Unicode edge cases.
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import unicodedata

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_path = os.path.join(root, "tests", "fixtures", "rewards", "cases.jsonl")


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def revision(d, rev):
    if rev:
        return rev
    try:
        return subprocess.check_output(["git", "-C", d, "rev-parse", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- cases: (reward, response, answer, note[, extra])

LONG = "Let me think about this carefully. " * 12  # 420 characters of filler

GSM8K = [
    # verl's own examples (tests/interactions/test_gsm8k_interaction.py, the data preprocessing's "#### " answers)
    ("#### 42", "42", "verl test: exact"),
    ("The answer is 42", "42", "verl test: no ####"),
    ("#### 24", "42", "verl test: wrong"),
    ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether.\n#### 72", "72",
     "gsm8k train[0] solution"),
    ("#### 1,000", "1000", "comma stripped"),
    ("#### 1,000,000", "1000000", "two commas"),
    ("#### 1,000", "1,000", "ground truth keeps its comma"),
    ("#### $42", "42", "dollar before the number: no match"),
    ("#### 42$", "42", "dollar after"),
    ("#### -5", "-5", "negative"),
    ("#### - 5", "-5", "minus then space: no match"),
    ("#### --5", "-5", "double minus: no match"),
    ("#### -", "-", "lone minus"),
    ("#### 3.50", "3.5", "trailing zero kept"),
    ("#### 3.5", "3.5", "decimal"),
    ("#### .5", ".5", "leading dot"),
    ("#### 5.", "5.", "trailing dot kept"),
    ("#### 72.", "72", "sentence dot is captured"),
    ("#### 1 #### 2", "2", "last of two"),
    ("#### 1 #### 2", "1", "the first is not taken"),
    ("#### 1\n#### 2\n#### 3", "3", "three on lines"),
    ("####42", "42", "no space after ####"),
    ("#### 42", "42.0", "string equality, not numeric"),
    ("####  42", "42", "two spaces"),
    ("##### 42", "42", "five hashes"),
    ("### 42", "42", "three hashes"),
    ("#### abc", "abc", "not a number"),
    ("", "42", "empty response"),
    ("#### 42", "", "empty ground truth"),
    ("#### 0", "0", "zero"),
    ("#### 007", "7", "leading zeros kept"),
    ("#### 12a", "12", "letters after"),
    ("#### 1.2.3", "1.2.3", "dots anywhere"),
    ("#### ,,,", "", "only commas: empty after stripping"),
    ("#### ,,,", "x", "only commas vs something"),
    ("#### 4\u00a02", "4", "no-break space ends the number"),
    ("#### \uff14\uff12", "42", "fullwidth digits are not [0-9]"),
    ("#### \u0664\u0662", "42", "Arabic-Indic digits are not [0-9]"),
    ("\u00e9" * 400 + "#### 42", "42", "long, answer late, two-byte filler"),
    ("#### 42" + "\u00e9" * 400, "42", "long, answer early, clipped away"),
    ("#### 42 " + "\u00e9" * 292, "42", "exactly 300 characters (600+ bytes): not clipped"),
    ("#### 42 " + "\u00e9" * 293, "42", "301 characters: the first is clipped"),
    ("x#### 42 " + "\U0001F600" * 291, "42", "300 characters of which 291 four-byte: kept"),
    ("x#### 42 " + "\U0001F600" * 292, "42", "301 characters: clip drops only the x"),
    ("xx#### 42 " + "\U0001F600" * 292, "42", "302 characters: clip drops xx"),
    ("x#### 42 " + "\U0001F600" * 293, "42", "303 characters: clip cuts into ####"),
    (LONG + "#### 42", "42", "long ASCII, answer late"),
    ("#### 42" + LONG, "42", "long ASCII, answer early"),
    ("#### 4" + "2" * 400, "4" + "2" * 400, "long number clipped from the front"),
    ("#### 4" + "2" * 294, "4" + "2" * 294, "300-character number"),
    ("The total is #### 18 dollars.", "18", "inside a sentence"),
    ("#### 1,2,3", "123", "commas between digits"),
    ("#### 5\n#### x", "5", "last match wins even if later text fails"),
    ("####\n42", "42", "newline instead of space"),
    ("#### \t42", "42", "tab"),
    ("#### 42", " 42", "ground truth with space"),
]

GSM8K_PARAMS = [
    ("#### 41", "42", "format score for a wrong answer", {"format_score": 0.1}),
    ("#### 42", "42", "custom score", {"format_score": 0.1, "score_value": 2.0}),
    ("no number", "42", "nothing extracted: 0 whatever format_score", {"format_score": 0.1}),
    ("#### 41", "42", "negative format score", {"format_score": -0.5, "score_value": 1.0}),
]

GSM8K_FLEX = [
    ("The answer is 42", "42", "verl test text"),
    ("#### 42", "42", "strict form"),
    ("I have 3 apples and 5 oranges, 8 in total.", "8", "last number"),
    ("I have 3 apples and 5 oranges, 8 in total.", "5", "not the earlier one"),
    ("It costs 1,000.", "1000", "flexible keeps commas"),
    ("It costs 1,000.", "1,000.", "comma and sentence dot kept"),
    ("It costs $1000", "1000", "dollar before"),
    ("5 - 3 = 2", "2", "equation"),
    ("5-3", "-3", "minus binds to the number"),
    ("x = -7", "-7", "negative"),
    ("Answer: 12. Done.", "12.", "the dot after is part of the match"),
    ("Answer: 12 . Done.", "12", "lone dot skipped"),
    ("only . dots .", ".", "every match is '.': the first is returned"),
    ("no digits here", "0", "nothing: 0"),
    ("", "0", "empty"),
    ("...", "...", "three dots are a valid match"),
    ("a 1 b .", "1", "trailing lone dot skipped"),
    ("1 . 2 . .", "2", "skip several lone dots"),
    ("-.", "-.", "minus dot"),
    ("\u00e9" * 400 + " 42", "42", "long, answer late"),
    ("42 " + "\u00e9" * 400, "42", "long, answer early"),
    ("42 " + "\u00e9" * 297, "42", "exactly 300 characters"),
    ("42 " + "\u00e9" * 298, "2", "301: the 4 is clipped"),
    (LONG + "7", "7", "long ASCII"),
    ("3.14159", "3.14159", "decimal"),
    ("1e5", "5", "exponent is not a number char"),
    ("\uff14\uff12 and 7", "7", "fullwidth ignored"),
    ("#### 10\nBut actually 11", "11", "flexible ignores ####"),
]

MATH = [
    # boxed extraction
    ("The answer is \\boxed{42}.", "42", "plain"),
    ("\\boxed{41}", "42", "wrong"),
    ("no box here 42", "42", "no box"),
    ("", "42", "empty response"),
    ("\\boxed{1} then \\boxed{2}", "2", "last box"),
    ("\\boxed{1} then \\boxed{2}", "1", "first box ignored"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "nested braces"),
    ("\\boxed{\\frac{1}{2}", "\\frac{1}{2}", "unbalanced: None"),
    ("\\boxed{{{x}}}", "{{x}}", "deep nesting"),
    ("\\boxed 5", "5", "\\boxed with a space"),
    ("\\boxed 5$ and more", "5", "\\boxed space stops at $"),
    ("\\boxed 5 is it", "5isit", "\\boxed space takes the rest"),
    ("\\boxed{3} and \\boxed 5", "5", "\\boxed space wins over braces"),
    ("\\boxed 5 and \\boxed{3}", "3", "a \\boxed space anywhere wins, even before"),
    ("\\boxed 5 and \\boxed{3}", "5and\\boxed{3}", "... taking the last \\boxed space's tail"),
    ("\\fbox{42}", "42", "\\fbox fails remove_boxed: 0"),
    ("\\boxed42", "42", "\\boxed without brace"),
    ("\\boxed\n{42}", "42", "newline between: remove_boxed fails"),
    ("$\\boxed{x^2}$", "x^2", "in math mode"),
    ("\\boxed{}", "", "empty box vs empty"),
    ("\\boxed{}", "0", "empty box vs 0"),
    ("\\boxed{ 42 }", "42", "spaces removed"),
    ("\\boxed{42}", " 42", "ground truth normalised too"),
    # strip_string rules
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", "dfrac"),
    ("\\boxed{\\tfrac{1}{2}}", "\\frac12", "tfrac and shorthand"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}", "\\frac12"),
    ("\\boxed{\\frac1{72}}", "\\frac{1}{72}", "\\frac1{72}"),
    ("\\boxed{\\frac{72}1}", "\\frac{72}{1}", "\\frac{72}1 is not fixed"),
    ("\\boxed{\\frac1b}", "\\frac{1}{b}", "\\frac1b"),
    ("\\boxed{\\frac123}", "\\frac{1}{2}3", "\\frac123"),
    ("\\boxed{\\frac1}", "\\frac1", "\\frac1: too short, string returned"),
    ("\\boxed{\\frac}", "\\frac", "\\frac at end: IndexError, raw compare"),
    ("\\boxed{\\frac}", "x", "\\frac at end vs other"),
    ("\\boxed{\\frac\\frac12}", "\\frac\\frac12", "\\frac\\frac: IndexError, raw compare"),
    ("\\boxed{1/2}", "\\frac{1}{2}", "a/b"),
    ("\\boxed{1/2}", "0.5", "a/b vs 0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}", "0.5"),
    ("\\boxed{.5}", "\\frac{1}{2}", ".5 -> 0.5 -> 1/2"),
    ("\\boxed{0.50}", "\\frac{1}{2}", "0.50 is not 0.5"),
    ("\\boxed{-1/2}", "\\frac{-1}{2}", "negative numerator"),
    ("\\boxed{1/-2}", "\\frac{1}{-2}", "negative denominator"),
    ("\\boxed{01/2}", "\\frac{1}{2}", "leading zero: not canonical"),
    ("\\boxed{-0/2}", "\\frac{0}{2}", "-0 is not canonical"),
    ("\\boxed{a/b}", "\\frac{a}{b}", "letters: not ints"),
    ("\\boxed{1/2/3}", "1/2/3", "two slashes"),
    ("\\boxed{10/3}", "\\frac{10}{3}", "multi-digit"),
    ("\\boxed{\\sqrt3}", "\\sqrt{3}", "sqrt3"),
    ("\\boxed{\\sqrt32}", "\\sqrt{3}2", "sqrt32"),
    ("\\boxed{2\\sqrt{3}}", "2\\sqrt3", "gt shorthand"),
    ("\\boxed{\\sqrt}", "\\sqrt", "\\sqrt at end: IndexError"),
    ("\\boxed{\\sqrt\\sqrt2}", "\\sqrt\\sqrt2", "\\sqrt\\sqrt: IndexError"),
    ("\\boxed{\\left(1,2\\right)}", "(1,2)", "\\left \\right"),
    ("\\boxed{\\left[ 1, 2 \\right]}", "[1,2]", "brackets and spaces"),
    ("\\boxed{90^\\circ}", "90", "^\\circ"),
    ("\\boxed{90^{\\circ}}", "90", "^{\\circ}"),
    ("\\boxed{\\$5}", "5", "\\$"),
    ("\\boxed{50\\%}", "50", "\\%"),
    ("\\boxed{50\\\\%}", "50", "\\\\%"),
    ("\\boxed{5 \\text{ cm}}", "5", "units on the right"),
    ("\\boxed{5 \\text{ cm} \\text{ m}}", "5", "two \\text{ : assertion, raw compare"),
    ("\\boxed{5 \\text{ cm} \\text{ m}}", "5 \\text{ cm} \\text{ m}", "... equal raw"),
    ("\\boxed{5\\text{cm}}", "5", "\\text{cm} without space stays"),
    ("\\boxed{k = 3}", "3", "short lhs dropped"),
    ("\\boxed{abc = 3}", "3", "long lhs kept"),
    ("\\boxed{x = y = 3}", "3", "two = kept"),
    ("\\boxed{x=3}", "x=3", "both sides normalised"),
    ("\\boxed{\\!1\\!000}", "1000", "\\! removed"),
    ("\\boxed{1,000}", "1000", "commas stay in math"),
    ("\\boxed{\\\\frac{1}{2}}", "\\frac{1}{2}", "double backslash"),
    ("\\boxed{a\nb}", "ab", "newline removed"),
    ("\\boxed{x^{2} + 1}", "x^{2}+1", "spaces"),
    ("\\boxed{\\{1, .5\\}}", "\\{1,0.5\\}", "space dot"),
    ("\\boxed{{.5}}", "{0.5}", "brace dot"),
    ("\\boxed{ . }", "0.", "space dot at start"),
    ("\\boxed{\\pi}", "\\pi", "symbol"),
    ("\\boxed{\\infty}", "\\infty", "infty"),
    ("\\boxed{\\text{(A)}}", "\\text{(A)}", "choice"),
    ("\\boxed{(A)}", "\\text{(A)}", "choice without text"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", "sqrt in frac"),
    ("\\boxed{\\dfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "dfrac sqrt"),
    ("\\boxed{\\frac{1}{2}}", "1/2", "gt a/b"),
    ("\\boxed{\\mbox{hi}}", "\\mbox{hi}", "mbox not special here"),
    ("\\boxed{\u03c0}", "\u03c0", "unicode pi"),
    ("\\boxed{\\sqrt\u03c0}", "\\sqrt{\u03c0}", "sqrt of a unicode character"),
    ("\\boxed{\\frac\u03c0\u03c4}", "\\frac{\u03c0}{\u03c4}", "frac of unicode characters"),
    ("\\boxed{1/" + "1" * 4300 + "}", "\\frac{1}{" + "1" * 4300 + "}", "4300 digits: int() accepts"),
    ("\\boxed{1/" + "1" * 4301 + "}", "\\frac{1}{" + "1" * 4301 + "}", "4301 digits: int() refuses"),
    ("\\boxed{1/" + "1" * 4301 + "}", "1/" + "1" * 4301, "4301 digits: kept as a/b"),
    ("\\boxed{1/+2}", "\\frac{1}{2}", "plus sign not canonical"),
    ("\\boxed{1/2_0}", "\\frac{1}{20}", "underscore not canonical"),
    ("\\boxed{\\left\\{1\\right\\}}", "\\{1\\}", "\\left\\{"),
    ("The final answer is $\\boxed{5}$. I hope it is correct.", "5", "Minerva phrasing"),
    (LONG + "\\boxed{7}", "7", "long: math reward is not clipped"),
    ("\\boxed{7}" + LONG, "7", "long, answer early: not clipped"),
    ("\\boxed{\\boxed{3}}", "\\boxed{3}", "box in a box: rfind finds the inner one"),
    ("\\boxed{\\boxed{3}}", "3", "... so it is 3"),
    ("\\boxed{\\fbox{3}}", "\\fbox{3}", "fbox in boxed"),
    ("}\\boxed{3}", "3", "stray brace before"),
    ("\\boxed{3}}", "3", "stray brace after"),
    ("\\boxed{3} \\fbox{4}", "3", "\\boxed found before \\fbox is tried"),
    ("\\boxed{a \\text{ and } b}", "a", "\\text{ unit rule"),
    ("\\boxed{0.5 }", "\\frac12", "0.5 with space"),
    ("\\boxed{5.}", "5", "trailing dot kept"),
    ("\\boxed{\\dfrac12}", "0.5", "dfrac12 vs 0.5"),
]

ANSWER = [
    ("Answer: 42", "42", "plain"),
    ("answer: 42", "42", "lower case"),
    ("ANSWER: 42", "42", "upper case"),
    ("AnSwEr : 42", "42", "mixed case, space before colon"),
    ("Answer:42", "42", "no space"),
    ("Answer:\n42", "42", "newline after colon"),
    ("Answer:\n\n  42", "42", "blank line then indent"),
    ("Answer\n:\n42", "42", "newline before colon"),
    ("Answer: 41", "42", "wrong"),
    ("The answer is 42", "42", "no tag: [INVALID]"),
    ("", "42", "empty"),
    ("", "[INVALID]", "empty vs [INVALID]"),
    ("Answer: 1\nAnswer: 2", "2", "last of two lines"),
    ("Answer: 1\nAnswer: 2", "1", "first not taken"),
    ("Answer: 1 Answer: 2", "2", "same line: one match to end of line"),
    ("Answer: 1 Answer: 2", "1Answer:2", "... normalised"),
    ("Answer:", "42", "tag with nothing"),
    ("Answer: ", "", "trailing space is captured then stripped"),
    ("Answer:   ", "", "trailing spaces"),
    ("Answer:\n", "42", "tag then newline only"),
    ("Answer: \n", "", "space then newline: captures the space"),
    ("Answer: \nAnswer: 5", "5", "second after an empty one"),
    ("Answer:\nAnswer: 5", "Answer:5", "newline is skipped by \\s*, next line captured"),
    ("\u017fome Answer: 3", "3", "long s elsewhere"),
    ("An\u017fwer: 3", "3", "long s matches s case-insensitively"),
    ("Answer\u00a0: 3", "3", "no-break space is \\s"),
    ("Answer:\u3000 3", "3", "ideographic space"),
    ("Answer:\x1c3", "3", "file separator is \\s in Python"),
    ("Answer\u200b: 3", "3", "zero-width space is not \\s"),
    ("Answer: 3\r\n", "3", "carriage return kept then stripped"),
    ("Answer: $3$", "3", "dollars"),
    ("Answer: x = 3", "3", "after the last ="),
    ("Answer: a = b = 3", "3", "last ="),
    ("Answer: 1,000", "1000", "commas of a number removed"),
    ("Answer: 1,000", "1,000", "gt normalised the same"),
    ("Answer: 1,000.5", "1000.5", "not all digits: comma stays"),
    ("Answer: 1,000.5", "1,000.5", "... equal to itself"),
    ("Answer: \u00b2,\u00b3", "\u00b2\u00b3", "superscripts are isdigit"),
    ("Answer: \u2460,\u2461", "\u2460\u2461", "circled digits are isdigit"),
    ("Answer: \u2469,1", "\u24691", "circled ten is not isdigit"),
    ("Answer: \u0664,\u0662", "\u0664\u0662", "Arabic-Indic digits"),
    ("Answer: 5 \\text{cm}", "5", "text removed then space"),
    ("Answer: 5 cm", "5", "units"),
    ("Answer: 5 meters", "5", "meters"),
    ("Answer: 5 degrees", "5", "degrees"),
    ("Answer: 90^\\circ", "90", "circ"),
    ("Answer: 90^{\\circ}", "90", "circ braces"),
    ("Answer: \\$5", "5", "escaped dollar"),
    ("Answer: 5 dollars", "5", "dollars"),
    ("Answer: an apple", "pple", "'an ' then 'a ' removed"),
    ("Answer: a cat", "cat", "'a ' removed"),
    ("Answer: \\text{Tuesday}", "Tuesday", "text"),
    ("Answer: \\textbf{7}", "7", "textbf"),
    ("Answer: \\overline{7}", "7", "overline"),
    ("Answer: \\boxed{7}", "7", "boxed"),
    ("Answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed greedy"),
    ("Answer: \\boxed{1} and \\boxed{2}", "1}and\\boxed{2", "greedy box to the last brace"),
    ("Answer: \\frac12", "\\frac{1}{2}", "frac shorthand"),
    ("Answer: \\frac1{2}", "\\frac{1}{{2}", "frac regex quirk"),
    ("Answer: \\frac{1}{2}", "\\frac{1}{2}", "frac full"),
    ("Answer: \\dfrac12", "\\frac{1}{2}", "dfrac is not mapped: dfrac12"),
    ("Answer: \\dfrac12", "\\dfrac{1}{2}", "dfrac12 shorthand"),
    ("Answer: \\sqrt3", "\\sqrt{3}", "sqrt"),
    ("Answer: \\sqrt{3}", "\\sqrt{3}", "sqrt braces"),
    ("Answer: 3\\sqrt2 + 1", "3\\sqrt{2}+1", "sqrt and spaces"),
    ("Answer: $x$ and $y$", "x", "two math spans: first kept"),
    ("Answer: $x$ $y$ $z$", "x", "three"),
    ("Answer: 5.$", "5", ".$"),
    ("Answer: \\(5\\)", "\\(5\\)", "\\( kept"),
    ("Answer: 5\\ldots", "5", "ldots"),
    ("Answer: 3 \\mbox{ km}", "3", "mbox -> text -> removed"),
    ("Answer: 1,\\text{and} 2", "1,2", "and list"),
    ("Answer: 1 \\text{and} 2", "1,2", "text and"),
    ("Answer: 5\\text{m}", "5", "\\text{m}"),
    ("Answer: 5 square feet", "5", "square feet"),
    ("Answer: 10 students", "10", "students"),
    ("Answer: \"7\"", "7", "quotes"),
    ("Answer: 7\\;", "7", "\\;"),
    ("Answer: 1{,}000", "1000", "{,}"),
    ("Answer: 5th", "5th", "th kept without mathrm"),
    ("Answer: 5\\mathrm{th}", "5", "mathrm th"),
    ("Answer: [INVALID]", "[INVALID]", "literal"),
    ("Answer: 42" + LONG, "42", "long, answer early: clipped away"),
    (LONG + "Answer: 42", "42", "long, answer late"),
    ("Answer: 42 " + "\u00e9" * 289, "42" + "\u00e9" * 289, "exactly 300 characters"),
    ("Answer: 42 " + "\u00e9" * 290, "nswer:42", "301: A clipped"),
    ("Final Answer: The final answer is 7. I hope it is correct.", "7", "Minerva sentence: the whole line is captured"),
    ("Final Answer: The final answer is 7. I hope it is correct.",
     "Thefinalansweris7.Ihopeitiscorrect.", "... captured whole"),
    ("Answer: -3", "-3", "negative"),
    ("Answer: 0.5", "\\frac{1}{2}", "no 0.5 rule here"),
    ("Answer: 0.5", "0.5", "0.5 itself"),
    ("Answer: 7 \n\n", "7", "trailing newlines"),
    ("answer:: 7", ":7", "double colon"),
    ("Answers: 7", "7", "Answers: no match"),
    ("Answer  :   7", "7", "spaces both sides"),
    ("Answer\t:\t7", "7", "tabs"),
    ("Answer: \t \n", "", "whitespace to the end of the line: \\s* gives back the last space"),
    ("Answer: x\\text{s}", "x", "\\text{s}"),
    ("Answer: 2 hours", "2", "hours"),
    ("Answer: 4 ways", "4", "ways"),
    ("Answer: 12 inches", "12", "inches"),
    ("Answer: 5 sue", "5", "sue"),
    ("Answer: \\text{\ns}", "", "only the first line is captured"),
    ("Answer: \\frac", "\\frac", "frac at end"),
    ("Answer: frac\\n", "frac{\\}{n}", "frac with two chars"),
    ("Answer: \\sqrt", "\\sqrt", "sqrt at end"),
]

THINK = [
    # TRL's docstring examples
    ("<think>\nThis is my reasoning.\n</think>\nThis is my answer.", "", "TRL docstring: good"),
    ("<think>\nThis is my reasoning.\nThis is my answer.", "", "TRL docstring: no close"),
    ("<think></think>", "", "empty think"),
    ("<think></think>answer", "", "empty think then answer"),
    ("<think>a</think><think>b</think>", "", "second think"),
    ("<think>a<think>b</think>", "", "nested open"),
    ("<think>a</think>b</think>", "", "two closes"),
    (" <think>a</think>", "", "leading space"),
    ("\n<think>a</think>", "", "leading newline"),
    ("<THINK>a</THINK>", "", "upper case"),
    ("", "", "empty"),
    ("<think>", "", "open only"),
    ("</think>", "", "close only"),
    ("<think>a\n\nb\n</think>\n\nc\n", "", "newlines everywhere (DOTALL)"),
    ("<think>a</think >", "", "space in close tag"),
    ("<think> </think>" + LONG, "", "long tail"),
    ("<think>" + LONG + "</think>", "", "long reasoning"),
    ("<think>\u00e9\U0001F600</think>ok", "", "unicode"),
    ("<think>a</think>\n<think>", "", "open after close"),
    ("<think><think></think>", "", "immediate second open"),
    ("<thinking>a</thinking>", "", "wrong tag"),
    ("<think>a</think>", "ignored", "the answer is ignored"),
    ("<think>x</thin", "", "truncated close"),
    ("<think>x</think", "", "close without >"),
]

EXACT = [
    ("42", "42", "equal"),
    ("42", "43", "different"),
    ("  42\n", "42", "response whitespace"),
    ("42", "\t42 ", "answer whitespace"),
    ("4 2", "42", "inner space kept"),
    ("", "", "both empty"),
    ("   ", "", "blank vs empty"),
    ("", "x", "empty vs x"),
    ("\u00a042\u3000", "42", "Unicode whitespace stripped"),
    ("\x1c42\x1f", "42", "separators are whitespace in Python"),
    ("\u200b42", "42", "zero-width space is not"),
    ("\u0085" + "42", "42", "NEL"),
    ("Paris", "paris", "case sensitive"),
    ("\u00e9", "e\u0301", "no Unicode normalisation"),
    ("a\nb", "a\nb", "inner newline"),
    ("42.", "42", "punctuation"),
]


# Random cases: concatenations of the pieces each rule reacts to, with answers taken from what the peer extracts
# (sometimes perturbed) so that matches are common. Seeded; the committed file is the reference either way.
PIECES = ["\\boxed{", "\\boxed ", "\\boxed", "\\fbox{", "{", "}", "{", "}", "$", "$", "\\frac", "\\dfrac", "tfrac", "frac",
          "\\sqrt", "sqrt", "\\text{", "\\text{ ", "\\textbf{", "\\overline{", "\\left", "\\right", "^\\circ", "^{\\circ}",
          "=", "/", "/", "1", "2", "0", "7", "12", "-", ".", ",", " ", " ", "\n", "\t", "Answer", "answer", ":", "#### ",
          "#", "<think>", "</think>", "a", "x", "\\!", "\\\\", "\\%", "\u00e9", "\u00a0", "\u017f", "\u00b2", "units", "cm",
          "an ", "a ", "\\$", "0.5", ".5", "\\ ", "mbox", "\\text{and}", "\\text{m}", "\\text{}", "{,}", "\"", "\\dots", "(",
          "[INVALID]", "\u3000", "\x1c", "\r", "\U0001F600", "{.", " .", "Answer: ", "#### 1", "#### -2", "#### 1,0",
          "\\boxed{1}", "\\boxed{\\frac12}"]


def random_cases(g, m, d, think, per_reward, seed):
    import re
    rng = random.Random(seed)

    def text(k):
        return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, k)))

    def perturb(s):
        ops = [lambda s: " " + s, lambda s: s + " ", lambda s: s.replace(" ", ""), lambda s: "{" + s + "}",
               lambda s: s.replace("\\frac", "\\dfrac"), lambda s: s + "1", lambda s: "x = " + s,
               lambda s: s.replace(",", "")]
        return rng.choice(ops)(s) if s and rng.random() < 0.5 else s

    out = []
    for reward in ["gsm8k", "gsm8k_flexible", "math", "answer_tag", "think_format", "exact"]:
        for i in range(per_reward):
            r = text(rng.choice([10, 30, 120]))
            if rng.random() < 0.1:
                r = "x" * rng.randint(250, 320) + r
            if reward == "think_format" and rng.random() < 0.7:
                r = "<think>" + r
            a = text(4)
            if reward.startswith("gsm8k") and rng.random() < 0.6:
                e = g.extract_solution(r, "strict" if reward == "gsm8k" else "flexible")
                a = perturb(e) if e else a
            elif reward == "math" and rng.random() < 0.6:
                b = m.last_boxed_only_string(r)
                try:
                    a = perturb(m.remove_boxed(b)) if b else a
                except AssertionError:
                    pass
            elif reward == "answer_tag" and rng.random() < 0.6:
                found = re.findall(r"(?i)Answer\s*:\s*([^\n]+)", r[-300:])
                a = perturb(found[-1]) if found else a
            elif reward == "exact" and rng.random() < 0.5:
                a = perturb(r)
            out.append((reward, r, a, f"random {i} (seed {seed})"))
    return out


def build_cases(g, m, d, think, per_reward, seed):
    def trl(text):
        return think.think_format_reward([[{"content": text}]])[0]

    cases = []

    def add(reward, resp, ans, note, score, extra=None):
        c = {"reward": reward, "response": resp, "answer": ans, "score": float(score), "note": note}
        if extra:
            c.update(extra)
        cases.append(c)

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # math_reward prints the exceptions it catches
        for r, a, n in GSM8K:
            add("gsm8k", r, a, n, g.compute_score(r, a, method="strict"))
        for r, a, n, p in GSM8K_PARAMS:
            add("gsm8k", r, a, n, g.compute_score(r, a, method="strict", format_score=p.get("format_score", 0.0),
                                                  score=p.get("score_value", 1.0)), p)
        for r, a, n in GSM8K_FLEX:
            add("gsm8k_flexible", r, a, n, g.compute_score(r, a, method="flexible"))
        for r, a, n in MATH:
            add("math", r, a, n, m.compute_score(r, a))
        for r, a, n in ANSWER:
            add("answer_tag", r, a, n, d.compute_score(r, a)["score"])
        for r, a, n in THINK:
            add("think_format", r, a, n, trl(r))
        for r, a, n in EXACT:
            add("exact", r, a, n, 1.0 if r.strip() == a.strip() else 0.0)
        score = {"gsm8k": lambda r, a: g.compute_score(r, a, method="strict"),
                 "gsm8k_flexible": lambda r, a: g.compute_score(r, a, method="flexible"),
                 "math": m.compute_score, "answer_tag": lambda r, a: d.compute_score(r, a)["score"],
                 "think_format": lambda r, a: trl(r), "exact": lambda r, a: 1.0 if r.strip() == a.strip() else 0.0}
        for reward, r, a, n in random_cases(g, m, d, think, per_reward, seed):
            add(reward, r, a, n, score[reward](r, a))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verl", required=True, help="a directory holding verl/utils/reward_score/")
    ap.add_argument("--trl", required=True, help="a directory holding trl/rewards/format_rewards.py")
    ap.add_argument("--verl-rev", help="verl's commit or version, when --verl is not a git checkout")
    ap.add_argument("--trl-rev", help="TRL's commit or version, when --trl is not a git checkout")
    ap.add_argument("--random", type=int, default=100, help="random cases per reward (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    ap.add_argument("--out", default=out_path)
    args = ap.parse_args()

    rs = os.path.join(args.verl, "verl", "utils", "reward_score")
    g = load(os.path.join(rs, "gsm8k.py"), "verl_gsm8k")
    m = load(os.path.join(rs, "math_reward.py"), "verl_math_reward")
    d = load(os.path.join(rs, "math_dapo.py"), "verl_math_dapo")
    think = load(os.path.join(args.trl, "trl", "rewards", "format_rewards.py"), "trl_format_rewards")

    cases = build_cases(g, m, d, think, args.random, args.seed)
    meta = {"verl": revision(args.verl, args.verl_rev), "trl": revision(args.trl, args.trl_rev),
            "python": sys.version.split()[0], "unicode": unicodedata.unidata_version,
            "script": "bench/reference/reward_fixtures.py"}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="ascii") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for c in cases:
            f.write(json.dumps(c) + "\n")
    counts = {}
    for c in cases:
        counts[c["reward"]] = counts.get(c["reward"], 0) + 1
    print(f"{len(cases)} cases -> {os.path.relpath(args.out, root)}: {counts}")


if __name__ == "__main__":
    main()
