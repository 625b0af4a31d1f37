// Checks on the library's sources themselves: a comment that names a drl_ function, type or constant names one
// that exists in the code (renamed or removed functions leave no stale references behind).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Split {
  std::string code, comments; // the file with comments blanked, and the comments with code blanked (lines kept)
};

// Separates comments from code (string and character literals stay code).
Split split(const std::string &s) {
  Split out{s, s};
  enum { CODE, LINE, BLOCK, STR, CHR } st = CODE;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i], n = i + 1 < s.size() ? s[i + 1] : '\0';
    bool comment = false;
    switch (st) {
      case CODE:
        if (c == '/' && n == '/') st = LINE, comment = true;
        else if (c == '/' && n == '*') st = BLOCK, comment = true;
        else if (c == '"') st = STR;
        else if (c == '\'') st = CHR;
        break;
      case LINE:
        comment = c != '\n';
        if (c == '\n') st = CODE;
        break;
      case BLOCK:
        comment = true;
        if (c == '*' && n == '/') {
          out.code[i + 1] = ' ';
          ++i;
          st = CODE;
        }
        break;
      case STR:
      case CHR:
        if (c == '\\') ++i;
        else if (c == (st == STR ? '"' : '\'')) st = CODE;
        break;
    }
    if (comment && c != '\n') out.code[i] = ' ';
    if (!comment && c != '\n') out.comments[i] = ' ';
  }
  return out;
}

// "file:line: name" for every drl_ name in a comment of `texts` that no code of `texts` holds.
std::vector<std::string> stale_names(const std::vector<std::pair<std::string, std::string>> &texts) {
  const std::regex name("\\b[dD][rR][lL]_[A-Za-z0-9_]+\\b");
  const std::regex pasted("\\b([dD][rR][lL]_[A-Za-z0-9_]*)[ \\t]*##"); // names a macro makes: drl_cfg_##e
  std::set<std::string> defined, prefixes;
  std::vector<Split> parts;
  for (const auto &t : texts) {
    parts.push_back(split(t.second));
    const std::string &code = parts.back().code;
    for (std::sregex_iterator it(code.begin(), code.end(), name), end; it != end; ++it) defined.insert(it->str());
    for (std::sregex_iterator it(code.begin(), code.end(), pasted), end; it != end; ++it) prefixes.insert((*it)[1]);
  }
  auto exists = [&](const std::string &n) {
    if (defined.count(n) || (n.back() == 's' && defined.count(n.substr(0, n.size() - 1)))) return true; // plurals
    for (const auto &p : prefixes)
      if (n.compare(0, p.size(), p) == 0 && n.size() > p.size()) return true;
    return false;
  };
  std::vector<std::string> stale;
  for (size_t f = 0; f < texts.size(); ++f) {
    std::istringstream lines(parts[f].comments);
    std::string line;
    for (int no = 1; std::getline(lines, line); ++no)
      for (std::sregex_iterator it(line.begin(), line.end(), name), end; it != end; ++it)
        if (!exists(it->str())) stale.push_back(texts[f].first + ":" + std::to_string(no) + ": " + it->str());
  }
  return stale;
}

std::vector<std::pair<std::string, std::string>> library_sources() {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> out;
  for (const char *dir : {"include", "kernels", "data", "distributed", "models", "samplers", "engine", "cli"})
    for (const auto &e : fs::directory_iterator(fs::path(DRL_SOURCE_DIR) / dir)) {
      std::string ext = e.path().extension().string();
      if (ext != ".c" && ext != ".h" && ext != ".cu" && ext != ".cuh") continue;
      std::ifstream in(e.path());
      std::stringstream ss;
      ss << in.rdbuf();
      out.emplace_back(std::string(dir) + "/" + e.path().filename().string(), ss.str());
    }
  return out;
}

} // namespace

TEST(Sources, CommentsNameOnlyWhatExists) {
  auto texts = library_sources();
  ASSERT_GT(texts.size(), 100u) << "the library's sources were not found under " << DRL_SOURCE_DIR;
  std::vector<std::string> stale = stale_names(texts);
  std::string all;
  for (const auto &s : stale) all += "\n  " + s;
  EXPECT_TRUE(stale.empty()) << "comments name what the code does not have:" << all;
}

TEST(Sources, StaleNamesAreFound) {
  // A comment naming a function that exists, one that does not, and names inside strings and code.
  std::vector<std::pair<std::string, std::string>> texts = {
      {"a.h", "/* drl_a_step: see drl_b_gone; drl_a_steps, drl_x_made */\nint drl_a_step(void);\n#define M(e) drl_x_##e\n"},
      {"a.c", "// calls drl_a_step\nconst char *s = \"/* drl_in_string */\";\nint drl_a_step(void) { return 0; }\n"}};
  std::vector<std::string> stale = stale_names(texts);
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0], "a.h:1: drl_b_gone");
}
