// Chat templates against transformers' own apply_chat_template: the real Jinja templates of Qwen2.5-7B-Instruct,
// Qwen3-0.6B (thinking on and off) and Llama-3.2-Instruct, plus ChatML and Qwen2's, rendered a committed set of
// conversations (bench/reference/chat_template_fixtures.py); every rendering here must be the same text byte for
// byte and the same ids on the fixture tokenizers. Negative controls show that a changed default system prompt, date
// or thinking switch is caught.
#include <jansson.h>

#include <cstdio>
#include <map>
#include <memory>

#include "tokenizer_fixture.h"

extern "C" {
#include "data/chat_template.h"
}

namespace {

std::string chat_dir() { return source_dir() + "/tests/fixtures/chat/"; }

struct Msg {
  std::string role, content;
};

struct Conversation {
  std::string name;
  std::vector<Msg> msgs;
};

struct Expected {
  size_t conversation;
  std::string tmpl, tokenizer, date, text;  // date empty: the default was passed
  std::vector<int32_t> ids;
};

std::string jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? std::string(json_string_value(v), json_string_length(v)) : std::string();
}

std::vector<json_t *> read_jsonl(const std::string &path) {
  std::vector<json_t *> out;
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::string line;
  while (std::getline(f, line)) {
    json_error_t err;
    json_t *v = json_loadb(line.data(), line.size(), 0, &err);
    EXPECT_NE(v, nullptr) << path << ":" << out.size() + 1 << ": " << err.text;
    if (v) out.push_back(v);
  }
  return out;
}

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  for (json_t *j : read_jsonl(chat_dir() + "conversations.jsonl")) {
    Conversation c{jstr(j, "name"), {}};
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "messages"), i, m) c.msgs.push_back({jstr(m, "role"), jstr(m, "content")});
    out.push_back(c);
    json_decref(j);
  }
  return out;
}

std::vector<Expected> expected() {
  std::vector<Expected> out;
  for (json_t *j : read_jsonl(chat_dir() + "expected.jsonl")) {
    Expected e{(size_t)json_integer_value(json_object_get(j, "conversation")), jstr(j, "template"),
               jstr(j, "tokenizer"), jstr(j, "date"), jstr(j, "text"), {}};
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "ids"), i, v) e.ids.push_back((int32_t)json_integer_value(v));
    out.push_back(e);
    json_decref(j);
  }
  return out;
}

std::vector<drl_chat_message> view(const std::vector<Msg> &msgs) {
  std::vector<drl_chat_message> v;
  for (const Msg &m : msgs) v.push_back({(char *)m.role.c_str(), (char *)m.content.c_str()});
  return v;
}

drl_chat_template get(const std::string &name, const std::string &date = "") {
  drl_chat_template t{};
  EXPECT_EQ(drl_chat_template_get(name.c_str(), &t), DRL_OK) << last_error();
  t.date = date.empty() ? nullptr : date.c_str();  // date outlives t in every caller
  return t;
}

// Renders msgs[skip..] with system (or none); empty string on failure, with the error reported.
std::string render(const drl_chat_template &t, const std::vector<Msg> &msgs, const char *system = nullptr,
                   size_t skip = 0) {
  std::vector<drl_chat_message> v = view(msgs);
  drl_text out{};
  drl_status st = drl_chat_render(&t, system, v.data() + skip, (int)(v.size() - skip), &out);
  EXPECT_EQ(st, DRL_OK) << last_error();
  std::string s(out.s ? out.s : "", (size_t)out.n);
  drl_text_free(&out);
  return s;
}

std::vector<int32_t> encode(const drl_chat_template &t, drl_tokenizer *tok, const std::vector<Msg> &msgs) {
  std::vector<drl_chat_message> v = view(msgs);
  drl_ids ids{};
  EXPECT_EQ(drl_chat_encode(&t, tok, nullptr, v.data(), (int)v.size(), &ids), DRL_OK) << last_error();
  std::vector<int32_t> out(ids.v, ids.v + ids.n);
  drl_ids_free(&ids);
  return out;
}

struct Counts {
  size_t n = 0, text = 0, ids = 0, prompt_form = 0, prompt_text = 0, system_arg = 0;
};

TEST(ChatTemplate, TextAndIdsEqualTransformersOnEveryConversation) {
  std::vector<Conversation> convs = conversations();
  std::vector<Expected> want = expected();
  ASSERT_GE(convs.size(), 12u);
  ASSERT_EQ(want.size(), convs.size() * 6) << "expected.jsonl: one line per conversation and template";
  std::map<std::string, std::unique_ptr<Tok>> toks;
  std::map<std::string, Counts> counts;
  std::vector<std::string> order;
  size_t shown = 0;
  for (const Expected &e : want) {
    ASSERT_LT(e.conversation, convs.size());
    const Conversation &c = convs[e.conversation];
    if (!toks.count(e.tokenizer)) {
      toks[e.tokenizer].reset(new Tok(source_dir() + "/tests/fixtures/" + e.tokenizer + "/tokenizer.json"));
      ASSERT_EQ(toks[e.tokenizer]->st, DRL_OK) << last_error();
    }
    if (!counts.count(e.tmpl)) order.push_back(e.tmpl);
    Counts &k = counts[e.tmpl];
    drl_chat_template t = get(e.tmpl, e.date);
    ++k.n;
    std::string text = render(t, c.msgs);
    if (text == e.text) ++k.text;
    else if (shown++ < 4) ADD_FAILURE() << e.tmpl << " \"" << c.name << "\": text differs\n got: " << text
                                        << "\nwant: " << e.text;
    if (encode(t, &toks[e.tokenizer]->t, c.msgs) == e.ids) ++k.ids;
    else if (shown++ < 4) ADD_FAILURE() << e.tmpl << " \"" << c.name << "\": ids differ";
    // A leading system message given as the system argument renders the same.
    bool has_system = c.msgs[0].role == "system";
    if (has_system && render(t, c.msgs, c.msgs[0].content.c_str(), 1) == e.text) ++k.system_arg;
    // The one-prompt form, where the conversation is [system,] user.
    size_t first = has_system ? 1 : 0;
    if (c.msgs.size() == first + 1 && c.msgs[first].role == "user") {
      ++k.prompt_form;
      drl_text out{};
      EXPECT_EQ(drl_chat_render_prompt(&t, has_system ? c.msgs[0].content.c_str() : nullptr,
                                       c.msgs[first].content.c_str(), &out), DRL_OK) << last_error();
      if (std::string(out.s ? out.s : "", (size_t)out.n) == e.text) ++k.prompt_text;
      drl_text_free(&out);
    }
  }
  for (const std::string &name : order) {
    const Counts &k = counts[name];
    size_t with_system = 0;
    for (const Conversation &c : convs) with_system += c.msgs[0].role == "system";
    printf("[ parity ] %-13s %zu of %zu conversations give transformers' text byte for byte, %zu its ids; "
           "%zu of %zu as one prompt, %zu of %zu with the system argument\n", name.c_str(), k.text, k.n, k.ids,
           k.prompt_text, k.prompt_form, k.system_arg, with_system);
    EXPECT_EQ(k.text, k.n) << name;
    EXPECT_EQ(k.ids, k.n) << name;
    EXPECT_EQ(k.prompt_text, k.prompt_form) << name;
    EXPECT_EQ(k.system_arg, with_system) << name;
  }
  EXPECT_EQ(order.size(), 6u);
}

// Negative controls: a template off by one detail renders other text than transformers for the conversations that
// detail touches, so the parity check above would catch it.
TEST(ChatTemplate, MutationsAreCaught) {
  std::vector<Conversation> convs = conversations();
  std::vector<Expected> want = expected();
  struct Mutation {
    const char *tmpl, *what;
    std::string system;  // a system argument replacing the default, where the conversation has none
    const char *as;      // render with this template instead
    const char *date;
  };
  const Mutation muts[] = {
      {"qwen2.5", "default system prompt with '!' for '.'",
       "You are Qwen, created by Alibaba Cloud. You are a helpful assistant!", "qwen2.5", nullptr},
      {"qwen2.5", "qwen2's default system prompt", "", "qwen2", nullptr},
      {"qwen2", "no default system prompt (chatml)", "", "chatml", nullptr},
      {"qwen3", "thinking off", "", "qwen3:nothink", nullptr},
      {"llama3", "another date", "", "llama3", "27 Jul 2024"},
  };
  for (const Mutation &mu : muts) {
    size_t touched = 0, caught = 0;
    for (const Expected &e : want) {
      if (e.tmpl != mu.tmpl) continue;
      const Conversation &c = convs[e.conversation];
      bool has_system = c.msgs[0].role == "system";
      if (!mu.system.empty() && has_system) continue;  // the default only shows without a system message
      ++touched;
      std::string date = mu.date ? mu.date : e.date;
      drl_chat_template t = get(mu.as, date);
      std::string got = render(t, c.msgs, mu.system.empty() ? nullptr : mu.system.c_str());
      caught += got != e.text;
    }
    printf("[ parity ] %s with %s: %zu of %zu renderings differ from transformers\n", mu.tmpl, mu.what, caught,
           touched);
    EXPECT_GT(touched, 0u);
    if (std::string(mu.as) == "chatml" || std::string(mu.as) == "qwen2")
      EXPECT_GT(caught, 0u) << mu.what;  // only conversations without a system message differ
    else
      EXPECT_EQ(caught, touched) << mu.what;
  }
}

TEST(ChatTemplate, UnknownNameListsTheKnownOnes) {
  drl_chat_template t{};
  EXPECT_EQ(drl_chat_template_get("qwen4", &t), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("\"qwen4\"");
  EXPECT_ERROR_HAS("raw, chatml, qwen2, qwen2.5, qwen3, qwen3:nothink, llama3");
  EXPECT_EQ(drl_chat_template_get(nullptr, &t), DRL_ERR_INVALID_ARG);
  for (const char *name : {"raw", "chatml", "qwen2", "qwen2.5", "qwen3", "qwen3:nothink", "llama3"}) {
    ASSERT_EQ(drl_chat_template_get(name, &t), DRL_OK) << name;
    EXPECT_STREQ(drl_chat_template_name(&t), name);
  }
}

TEST(ChatTemplate, RawIsThePromptAsIs) {
  drl_chat_template t = get("raw");
  Tok tok(tok_fixture_dir() + "qwen/tokenizer.json");
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  const std::string prompt = "  What is <|im_start|> 2 + 3?\n";
  EXPECT_EQ(render(t, {{"user", prompt}}), prompt);
  drl_ids ids{};
  ASSERT_EQ(drl_chat_encode_prompt(&t, &tok.t, nullptr, prompt.c_str(), &ids), DRL_OK) << last_error();
  EXPECT_EQ(std::vector<int32_t>(ids.v, ids.v + ids.n), tok.encode(prompt, 0));
  drl_text out{};
  EXPECT_EQ(drl_chat_render_prompt(&t, "sys", prompt.c_str(), &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("no system prompt");
  drl_chat_message two[] = {{(char *)"user", (char *)"a"}, {(char *)"assistant", (char *)"b"}};
  EXPECT_EQ(drl_chat_render(&t, nullptr, two, 2, &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("exactly one user message");
  drl_ids_free(&ids);
  drl_text_free(&out);
}

TEST(ChatTemplate, BadConversationsAreRefused) {
  drl_chat_template t = get("qwen2.5");
  drl_text out{};
  drl_chat_message tool[] = {{(char *)"tool", (char *)"42"}};
  EXPECT_EQ(drl_chat_render(&t, nullptr, tool, 1, &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("role \"tool\" (expected system, user or assistant)");
  drl_chat_message sys[] = {{(char *)"system", (char *)"a"}, {(char *)"user", (char *)"b"}};
  EXPECT_EQ(drl_chat_render(&t, "other", sys, 2, &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("a system prompt was given and the messages start with a system message");
  drl_chat_message bad[] = {{(char *)"user", (char *)"ok \xff"}};
  EXPECT_EQ(drl_chat_render(&t, nullptr, bad, 1, &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("message 0 (user): content is not valid UTF-8 at byte 3");
  EXPECT_EQ(drl_chat_render(&t, nullptr, sys, 0, &out), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("no messages");
  drl_text_free(&out);
}

TEST(ChatTemplate, TokenizerWithoutTheTemplatesTokensIsRefused) {
  drl_ids ids{};
  Tok llama(tok_fixture_dir() + "llama/tokenizer.json");  // has <|begin_of_text|> and <|eot_id|>, no header tokens
  ASSERT_EQ(llama.st, DRL_OK) << last_error();
  drl_chat_template q = get("qwen2.5"), l = get("llama3");
  EXPECT_EQ(drl_chat_encode_prompt(&q, &llama.t, nullptr, "hi", &ids), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("chat template qwen2.5 needs the added token <|im_start|>");
  EXPECT_EQ(drl_chat_encode_prompt(&l, &llama.t, nullptr, "hi", &ids), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("needs the added token <|start_header_id|>, which the bpe tokenizer lacks");
  drl_ids_free(&ids);
}

}  // namespace
