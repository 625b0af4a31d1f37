// Text rewards against the peers: every case of tests/fixtures/rewards/cases.jsonl (scored by verl's and TRL's own
// code through bench/reference/reward_fixtures.py) must get the peer's score; mutated cases and expectations must
// not; and the reward spec parser.
#include <gtest/gtest.h>
#include <jansson.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "data/text_reward.h"
}

namespace {

struct Case {
  std::string reward, response, answer, note;
  double score = 0.0;
  bool params = false; // gsm8k with its own format_score / score
  double format_score = 0.0, score_value = 1.0;
  int line = 0;
};

std::string json_text(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? std::string(json_string_value(v), json_string_length(v)) : std::string();
}

std::vector<Case> load_cases() {
  const std::string path = std::string(DRL_SOURCE_DIR) + "/tests/fixtures/rewards/cases.jsonl";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<Case> out;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    json_error_t err;
    json_t *o = json_loadb(line.data(), line.size(), 0, &err);
    EXPECT_NE(o, nullptr) << path << ":" << no << ": " << err.text;
    if (!o) continue;
    if (!json_object_get(o, "meta")) {
      Case c;
      c.reward = json_text(o, "reward");
      c.response = json_text(o, "response");
      c.answer = json_text(o, "answer");
      c.note = json_text(o, "note");
      c.score = json_number_value(json_object_get(o, "score"));
      c.line = no;
      json_t *fs = json_object_get(o, "format_score"), *sv = json_object_get(o, "score_value");
      c.params = fs || sv;
      if (fs) c.format_score = json_number_value(fs);
      if (sv) c.score_value = json_number_value(sv);
      out.push_back(c);
    }
    json_decref(o);
  }
  return out;
}

// Our score of a case (NaN when the call fails).
double score_of(const Case &c) {
  double s = NAN;
  drl_status st;
  if (c.params) {
    st = drl_reward_gsm8k(c.response.data(), c.response.size(), c.answer.data(), c.answer.size(),
                          c.reward == "gsm8k_flexible", c.format_score, c.score_value, &s);
  } else {
    drl_text_reward_kind kind;
    st = drl_text_reward_lookup(c.reward.data(), c.reward.size(), &kind);
    if (st == DRL_OK)
      st = drl_text_reward_score(kind, c.response.data(), c.response.size(), c.answer.data(), c.answer.size(), &s);
  }
  EXPECT_EQ(st, DRL_OK) << "line " << c.line << ": " << drl_last_error();
  return s;
}

std::string shorten(const std::string &s) { return s.size() > 60 ? s.substr(0, 57) + "..." : s; }

// Matches per reward ("all" included); mismatches are reported when report is set.
std::map<std::string, std::pair<int, int>> compare(const std::vector<Case> &cases, bool report) {
  std::map<std::string, std::pair<int, int>> m;
  for (const Case &c : cases) {
    double s = score_of(c);
    bool ok = s == c.score;
    for (const std::string &k : {c.reward, std::string("all")}) {
      m[k].first += ok;
      m[k].second += 1;
    }
    if (!ok && report)
      ADD_FAILURE() << "cases.jsonl:" << c.line << " " << c.reward << " (" << c.note << "): response \""
                    << shorten(c.response) << "\" answer \"" << shorten(c.answer) << "\": peer " << c.score
                    << ", ours " << s;
  }
  return m;
}

TEST(TextReward, MatchesThePeersOnEveryFixtureCase) {
  std::vector<Case> cases = load_cases();
  auto m = compare(cases, true);
  for (const auto &kv : m) printf("  %-15s %d / %d cases match the peer\n", kv.first.c_str(), kv.second.first,
                                  kv.second.second);
  // An emptied or truncated fixture must not pass: every reward is covered, 150 cases at least.
  EXPECT_GE(m["all"].second, 150);
  for (const char *const *n = drl_text_reward_names(); *n; ++n) EXPECT_GE(m[*n].second, 10) << *n;
}

TEST(TextReward, WrongExpectationsAreCaught) {
  // The comparison itself: every expected score moved off its value must fail every case.
  std::vector<Case> cases = load_cases();
  for (Case &c : cases) c.score += 0.5;
  EXPECT_EQ(compare(cases, false)["all"].first, 0);
}

TEST(TextReward, PerturbedAnswersChangeTheScore) {
  // Every hand-written case the peer scores as correct stops being correct when the answer (think_format: the
  // response) changes. Random cases are left out: normalisation can absorb the change there.
  int perturbed = 0;
  for (Case c : load_cases()) {
    bool top = c.params ? c.score == c.score_value : c.score == 1.0;
    if (!top || c.note.rfind("random ", 0) == 0) continue;
    if (c.reward == "think_format") c.response = " " + c.response;
    else c.answer += "9";
    EXPECT_NE(score_of(c), c.score) << "cases.jsonl:" << c.line << " " << c.reward << " (" << c.note << ")";
    ++perturbed;
  }
  EXPECT_GE(perturbed, 100);
}

double score(drl_text_reward_kind kind, const std::string &r, const std::string &a) {
  double s = NAN;
  EXPECT_EQ(drl_text_reward_score(kind, r.data(), r.size(), a.data(), a.size(), &s), DRL_OK) << drl_last_error();
  return s;
}

TEST(TextReward, BytesThatAreNotUtf8CountAsOneCharacterEach) {
  const std::string bad(292, '\xff');
  EXPECT_EQ(score(DRL_REWARD_GSM8K, "#### 42 " + bad, "42"), 1.0);       // 300 characters: kept whole
  EXPECT_EQ(score(DRL_REWARD_GSM8K, "#### 42 " + bad + "\xff", "42"), 0.0); // 301: the first '#' is clipped
  EXPECT_EQ(score(DRL_REWARD_EXACT, "\xc3", "\xc3"), 1.0);
  EXPECT_EQ(score(DRL_REWARD_EXACT, "\xc3", "\xc4"), 0.0);
  EXPECT_EQ(score(DRL_REWARD_EXACT, std::string("4\0" "2", 3), std::string("4\0" "2", 3)), 1.0); // NUL is a character
  EXPECT_EQ(score(DRL_REWARD_EXACT, std::string("4\0" "2", 3), "4"), 0.0);
  EXPECT_EQ(score(DRL_REWARD_ANSWER_TAG, "Answer: \xe2\x82", "\xe2\x82"), 1.0); // truncated sequence
}

TEST(TextReward, NullArgumentsAndBadKindsAreErrors) {
  double s;
  EXPECT_EQ(drl_text_reward_score(DRL_REWARD_EXACT, nullptr, 0, "", 0, &s), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_text_reward_score(DRL_REWARD_EXACT, "", 0, "", 0, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_text_reward_score(DRL_REWARD_KINDS, "", 0, "", 0, &s), DRL_ERR_INVALID_ARG);
  drl_text_reward_kind k;
  EXPECT_EQ(drl_text_reward_lookup("gsm8", 4, &k), DRL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(drl_last_error()).find("known: gsm8k, gsm8k_flexible, math, answer_tag, think_format, exact"),
            std::string::npos)
      << drl_last_error();
  ASSERT_EQ(drl_text_reward_lookup("math_extra", 4, &k), DRL_OK); // the length bounds the name
  EXPECT_EQ(k, DRL_REWARD_MATH);
}

TEST(TextRewardSpec, ParsesWeightsAndDefaults) {
  drl_text_reward_spec sp;
  ASSERT_EQ(drl_text_reward_parse("gsm8k:1.0,think_format:0.1", &sp), DRL_OK) << drl_last_error();
  ASSERT_EQ(sp.n, 2);
  EXPECT_EQ(sp.kind[0], DRL_REWARD_GSM8K);
  EXPECT_EQ(sp.weight[0], 1.0);
  EXPECT_EQ(sp.kind[1], DRL_REWARD_THINK_FORMAT);
  EXPECT_EQ(sp.weight[1], 0.1);
  ASSERT_EQ(drl_text_reward_parse(" math , answer_tag : -0.5 ,exact:2e-1", &sp), DRL_OK) << drl_last_error();
  ASSERT_EQ(sp.n, 3);
  EXPECT_EQ(sp.kind[0], DRL_REWARD_MATH);
  EXPECT_EQ(sp.weight[0], 1.0);
  EXPECT_EQ(sp.kind[1], DRL_REWARD_ANSWER_TAG);
  EXPECT_EQ(sp.weight[1], -0.5);
  EXPECT_EQ(sp.weight[2], 0.2);
  ASSERT_EQ(drl_text_reward_parse("gsm8k,gsm8k_flexible,math,answer_tag,think_format,exact", &sp), DRL_OK);
  EXPECT_EQ(sp.n, DRL_REWARD_KINDS);
}

TEST(TextRewardSpec, ErrorsNameTheTermAndTheKnownRewards) {
  drl_text_reward_spec sp;
  sp.n = 7;
  struct Bad {
    const char *spec, *says;
  } bad[] = {{"gsm8k:1.0,think:0.1", "unknown reward \"think\" (known: gsm8k, gsm8k_flexible, math, answer_tag, "
                                     "think_format, exact)"},
             {"", "term 1 has no reward name"},
             {"gsm8k,", "term 2 has no reward name"},
             {":1", "term 1 has no reward name"},
             {"gsm8k:", "the weight of gsm8k is \"\", expected a finite number"},
             {"gsm8k:x", "the weight of gsm8k is \"x\""},
             {"gsm8k:1.0.0", "the weight of gsm8k is \"1.0.0\""},
             {"math:inf", "expected a finite number"},
             {"math:nan", "expected a finite number"},
             {"math:1e999", "expected a finite number"},
             {"math:1:2", "the weight of math is \"1:2\""},
             {"exact,exact:2", "exact appears twice"}};
  for (const Bad &b : bad) {
    EXPECT_EQ(drl_text_reward_parse(b.spec, &sp), DRL_ERR_INVALID_ARG) << b.spec;
    std::string e = drl_last_error();
    EXPECT_NE(e.find(b.says), std::string::npos) << b.spec << ": " << e;
    EXPECT_NE(e.find("reward spec"), std::string::npos) << e;
  }
  EXPECT_EQ(sp.n, 7); // untouched on failure
  EXPECT_EQ(drl_text_reward_parse(nullptr, &sp), DRL_ERR_INVALID_ARG);
}

TEST(TextRewardSpec, EvaluatesTheWeightedSum) {
  drl_text_reward_spec sp;
  ASSERT_EQ(drl_text_reward_parse("gsm8k:1.0,think_format:0.1,answer_tag:0.5", &sp), DRL_OK);
  auto eval = [&](const std::string &r, const std::string &a) {
    double v = NAN;
    EXPECT_EQ(drl_text_reward_eval(&sp, r.data(), r.size(), a.data(), a.size(), &v), DRL_OK) << drl_last_error();
    return v;
  };
  EXPECT_DOUBLE_EQ(eval("<think>6*7</think>\n#### 42", "42"), 1.0 + 0.1 - 0.5);
  EXPECT_DOUBLE_EQ(eval("<think>6*7</think>\nAnswer: 42\n#### 42", "42"), 1.0 + 0.1 + 0.5);
  EXPECT_DOUBLE_EQ(eval("#### 41", "42"), -0.5);
  drl_text_reward_spec empty = {};
  double v;
  EXPECT_EQ(drl_text_reward_eval(&empty, "", 0, "", 0, &v), DRL_ERR_INVALID_ARG);
}

} // namespace
