// JSONL prompt sets (data/prompt_jsonl.h): the three kinds of line, numeric answers, blank lines and CRLF, and every
// error naming the file, the line and the column.
#include <string>

#include "test_util.h"

extern "C" {
#include "data/prompt_jsonl.h"
}

namespace {

drl_status parse(const std::string &text, drl_prompt_set *set) {
  return drl_prompt_jsonl_parse("p.jsonl", text.data(), text.size(), set);
}

}  // namespace

TEST(PromptJsonl, ParsesEveryKindOfLine) {
  const std::string text =
      "{\"prompt\": \"What is 2 + 3?\", \"answer\": \"5\", \"system\": \"Be brief.\", \"id\": 17}\r\n"
      "\n"
      "   \n"
      "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Q \\u00e9\\ud83d\\ude00\"}], \"answer\": 42}\n"
      "{\"prompt_ids\": [1, 2, 151644], \"answer\": \"#### 7\"}";
  drl_prompt_set s;
  ASSERT_EQ(parse(text, &s), DRL_OK) << last_error();
  ASSERT_EQ(s.n, 3);
  EXPECT_EQ(s.records[0].line, 1);
  EXPECT_STREQ(s.records[0].prompt, "What is 2 + 3?");
  EXPECT_STREQ(s.records[0].system, "Be brief.");
  EXPECT_STREQ(s.records[0].answer, "5");
  EXPECT_EQ(s.records[1].line, 4);
  ASSERT_EQ(s.records[1].n_messages, 2);
  EXPECT_STREQ(s.records[1].messages[1].role, "user");
  EXPECT_STREQ(s.records[1].messages[1].content, "Q \xc3\xa9\xf0\x9f\x98\x80") << "escapes and surrogate pairs";
  EXPECT_STREQ(s.records[1].answer, "42") << "a numeric answer is its text";
  EXPECT_EQ(s.records[1].prompt, nullptr);
  ASSERT_EQ(s.records[2].n_ids, 3);
  EXPECT_EQ(s.records[2].prompt_ids[2], 151644);
  EXPECT_EQ(s.records[2].system, nullptr);
  drl_prompt_set_free(&s);
  EXPECT_EQ(s.n, 0);
}

TEST(PromptJsonl, ErrorsNameTheLineAndTheColumn) {
  const std::string ok = "{\"prompt\": \"a\", \"answer\": \"1\"}\n";
  struct Case {
    std::string text, want;
  } cases[] = {
      {ok + "{\"prompt\": \"b\", \"answer\": }\n", "p.jsonl:2:27: not valid JSON"},
      {ok + ok + "{\"prompt\": \"b\"}\n", "p.jsonl:3:1: \"answer\" is missing"},
      {ok + "{\"prompt\": \"b\", \"prompt_ids\": [1], \"answer\": \"1\"}\n", "p.jsonl:2:1: a line needs exactly one of"},
      {"{\"answer\": \"1\"}\n", "p.jsonl:1:1: a line needs exactly one of \"prompt\", \"messages\" and \"prompt_ids\" (it has 0)"},
      {"{\"answer\": \"1\", \"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}\n",
       "p.jsonl:1:17: \"messages\" has role \"tool\""},
      {"{\"prompt_ids\": [1, -2], \"answer\": \"1\"}\n", "p.jsonl:1:2: \"prompt_ids\" must hold integer ids"},
      {"{\"prompt_ids\": [1], \"answer\": \"1\", \"system\": \"s\"}\n", "p.jsonl:1:36: \"system\" does not go with"},
      {"{\"prompt\": 3, \"answer\": \"1\"}\n", "p.jsonl:1:2: \"prompt\" must be a string"},
      {"{\"prompt\": \"a\", \"answer\": [1]}\n", "p.jsonl:1:17: \"answer\" must be a string"},
      {"[1, 2]\n", "p.jsonl:1:1: not a JSON object"},
      {"{\"prompt\": \"a\", \"prompt\": \"b\", \"answer\": \"1\"}\n", "duplicate"},
      {"\n\n", "p.jsonl: no prompts"},
  };
  for (const Case &c : cases) {
    drl_prompt_set s;
    EXPECT_EQ(parse(c.text, &s), DRL_ERR_FORMAT) << c.text;
    EXPECT_ERROR_HAS(c.want);
    EXPECT_EQ(s.n, 0);
  }
}

TEST(PromptJsonl, ReadsAFile) {
  drl_prompt_set s;
  EXPECT_EQ(drl_prompt_jsonl_read("/nonexistent/p.jsonl", &s), DRL_ERR_IO);
  EXPECT_ERROR_HAS("/nonexistent/p.jsonl: cannot open");
}
