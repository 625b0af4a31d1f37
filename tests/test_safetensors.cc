// safetensors (data/safetensors.h): round trips in F32 and BF16, the 16-bit conversions against their definitions,
// sharded models, and every malformed header named by file and tensor. Files are also built byte by byte here, so the
// reader is checked against the format rather than against dynrl's own writer.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/safetensors.h"
#include "kernels/float16.h"
}

namespace {

// A safetensors file from a header text and data bytes (header length written as given, unpadded).
std::string st_bytes(const std::string &header, const std::string &data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char *>(&n), 8);
  return out + header + data;
}

void write_file(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::vector<float> read_all(const drl_safetensors &st, const char *name) {
  const drl_st_tensor *t = drl_st_find(&st, name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  std::vector<float> out((size_t)t->numel);
  EXPECT_EQ(drl_st_read_f32(&st, t, out.data()), DRL_OK) << last_error();
  return out;
}

// bf16 by its definition: the nearest value with 8 mantissa bits, ties to even, computed in double.
uint16_t bf16_reference(float f) {
  if (std::isnan(f)) return 0x7fc0;
  uint32_t u = bits(f);
  uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
  double x = f, a = drl_bf16_to_f32(lo), b = drl_bf16_to_f32(hi);
  if (std::fabs(x - a) < std::fabs(b - x)) return lo;
  if (std::fabs(x - a) > std::fabs(b - x)) return hi;
  return (lo & 1) ? hi : lo;
}

class SafetensorsTest : public TempDirTest {};

}  // namespace

TEST(Float16, Bf16RoundsToNearestEvenAndKeepsNaN) {
  std::mt19937 rng(5);
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = (uint32_t)rng();
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isinf(f) || (u & 0x7f800000u) == 0x7f800000u) continue;
    if (std::fabs(f) > 3.3e38f) continue;  // rounding up to infinity: checked below
    ASSERT_EQ(drl_f32_to_bf16(f), bf16_reference(f)) << std::hexfloat << f;
  }
  // Ties: halfway between two bf16 values, both parities.
  EXPECT_EQ(drl_f32_to_bf16(drl_bits_float(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(drl_f32_to_bf16(drl_bits_float(0x3f818000u)), 0x3f82);  // tie, odd below: up
  EXPECT_EQ(drl_f32_to_bf16(drl_bits_float(0x7f7fffffu)), 0x7f80);  // the largest float rounds to infinity
  uint16_t nan = drl_f32_to_bf16(drl_bits_float(0x7f800001u));      // a NaN whose payload is in the low half
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0) << "a NaN must not become infinity";
  for (uint32_t h = 0; h < 65536; ++h) EXPECT_EQ(bits(drl_bf16_to_f32((uint16_t)h)), h << 16);
}

TEST(Float16, F16ToF32IsExactForEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    uint32_t e = (h >> 10) & 31, m = h & 1023;
    double sign = (h & 0x8000) ? -1.0 : 1.0, want;
    float got = drl_f16_to_f32((uint16_t)h);
    if (e == 31) {
      if (m == 0) EXPECT_TRUE(std::isinf(got) && (got < 0) == (sign < 0)) << h;
      else EXPECT_TRUE(std::isnan(got)) << h;
      continue;
    }
    want = e == 0 ? sign * std::ldexp((double)m, -24) : sign * std::ldexp(1.0 + m / 1024.0, (int)e - 15);
    ASSERT_EQ((double)got, want) << "binary16 " << std::hex << h;
    EXPECT_EQ(std::signbit(got), sign < 0) << h;
  }
}

TEST_F(SafetensorsTest, F32AndBf16RoundTrip) {
  std::vector<float> a = random_normal(6 * 7, 1.0f, 1), b = random_normal(5, 100.0f, 2);
  drl_st_source src[3] = {{"model.a.weight", a.data(), 2, {6, 7}}, {"b", b.data(), 1, {5}}, {"empty", nullptr, 2, {0, 3}}};
  ASSERT_EQ(drl_st_write(path("f32.safetensors").c_str(), src, 3, "F32"), DRL_OK) << last_error();
  ASSERT_EQ(drl_st_write(path("bf16.safetensors").c_str(), src, 3, "BF16"), DRL_OK) << last_error();
  drl_safetensors f, h;
  ASSERT_EQ(drl_st_open(&f, path("f32.safetensors").c_str()), DRL_OK) << last_error();
  ASSERT_EQ(drl_st_open(&h, path("bf16.safetensors").c_str()), DRL_OK) << last_error();
  ASSERT_EQ(f.count, 3);
  const drl_st_tensor *t = drl_st_find(&f, "model.a.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_STREQ(t->dtype, "F32");
  EXPECT_EQ(t->ndim, 2);
  EXPECT_EQ(t->shape[0], 6);
  EXPECT_EQ(t->shape[1], 7);
  EXPECT_STREQ(drl_st_find(&h, "b")->dtype, "BF16");
  EXPECT_EQ(drl_st_find(&f, "empty")->numel, 0);
  EXPECT_EQ(drl_st_find(&f, "missing"), nullptr);
  std::vector<float> ga = read_all(f, "model.a.weight"), gb = read_all(h, "b");
  EXPECT_EQ(0, std::memcmp(ga.data(), a.data(), a.size() * 4));
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(bits(gb[i]), (uint32_t)bf16_reference(b[i]) << 16) << i;
  // The writer pads the header to a multiple of 8 bytes and marks the format for transformers.
  std::ifstream in(path("f32.safetensors"), std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char *>(&n), 8);
  std::string header((size_t)n, '\0');
  in.read(&header[0], (std::streamsize)n);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_NE(header.find("\"__metadata__\":{\"format\":\"pt\"}"), std::string::npos) << header;
  drl_st_close(&f);
  drl_st_close(&h);
}

TEST_F(SafetensorsTest, ReadsF16AndUnpaddedHeadersAtAnyAlignment) {
  // Built by hand: an F16 tensor after a 3-byte U8 one, so its data starts at an odd address, and a header of a
  // length that is not a multiple of 8.
  std::vector<uint16_t> h = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555};
  std::string data = std::string("\x01\x02\x03", 3) + std::string(reinterpret_cast<const char *>(h.data()), 10);
  std::string header =
      R"({"u":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"h":{"dtype":"F16","shape":[5],"data_offsets":[3,13]}})";
  if (header.size() % 2) header += ' ';  // trailing whitespace is valid JSON: now the F16 data starts at an odd offset
  ASSERT_NE((header.size() + 8 + 3) % 2, 0u);
  write_file(path("h.safetensors"), st_bytes(header, data));
  drl_safetensors st;
  ASSERT_EQ(drl_st_open(&st, path("h.safetensors").c_str()), DRL_OK) << last_error();
  std::vector<float> got = read_all(st, "h");
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[1], -2.0f);
  EXPECT_EQ(got[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(got[3]));
  EXPECT_EQ(got[4], drl_f16_to_f32(0x3555));
  std::vector<float> u(3);
  EXPECT_EQ(drl_st_read_f32(&st, drl_st_find(&st, "u"), u.data()), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("tensor \"u\": dtype U8 is not supported");
  drl_st_close(&st);
}

TEST_F(SafetensorsTest, ShardedModelsGoThroughTheIndex) {
  std::vector<std::vector<float>> data;
  std::vector<drl_st_source> src;
  std::vector<std::string> names;
  for (int i = 0; i < 7; ++i) names.push_back("layer." + std::to_string(i) + ".weight");
  for (int i = 0; i < 7; ++i) data.push_back(random_normal(100 + 10 * i, 1.0f, 10 + i));
  for (int i = 0; i < 7; ++i) src.push_back({names[i].c_str(), data[i].data(), 1, {(int64_t)data[i].size()}});
  int shards = 0;
  ASSERT_EQ(drl_st_write_model(dir_.c_str(), src.data(), 7, "F32", 1200, &shards), DRL_OK) << last_error();
  EXPECT_GT(shards, 2);
  EXPECT_TRUE(std::filesystem::exists(path("model.safetensors.index.json")));
  EXPECT_FALSE(std::filesystem::exists(path("model.safetensors")));
  drl_safetensors st;
  ASSERT_EQ(drl_st_open(&st, dir_.c_str()), DRL_OK) << last_error();
  EXPECT_EQ(st.nfiles, shards);
  ASSERT_EQ(st.count, 7);
  for (int i = 0; i < 7; ++i) {
    std::vector<float> got = read_all(st, names[i].c_str());
    EXPECT_EQ(0, std::memcmp(got.data(), data[i].data(), data[i].size() * 4)) << names[i];
  }
  drl_st_close(&st);

  // One shard: a plain model.safetensors, no index.
  std::string one = path("one");
  std::filesystem::create_directory(one);
  ASSERT_EQ(drl_st_write_model(one.c_str(), src.data(), 7, "BF16", 1 << 20, &shards), DRL_OK) << last_error();
  EXPECT_EQ(shards, 1);
  EXPECT_TRUE(std::filesystem::exists(one + "/model.safetensors"));
  ASSERT_EQ(drl_st_open(&st, one.c_str()), DRL_OK) << last_error();
  EXPECT_EQ(st.count, 7);
  drl_st_close(&st);
}

TEST_F(SafetensorsTest, AnIndexThatLiesIsNamed) {
  std::vector<float> a(4, 1.0f), b(4, 2.0f);
  drl_st_source sa = {"a", a.data(), 1, {4}}, sb = {"b", b.data(), 1, {4}};
  ASSERT_EQ(drl_st_write(path("s1.safetensors").c_str(), &sa, 1, "F32"), DRL_OK);
  ASSERT_EQ(drl_st_write(path("s2.safetensors").c_str(), &sb, 1, "F32"), DRL_OK);
  drl_safetensors st;
  struct Case {
    std::string index, want;
  } cases[] = {
      {R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})", ""},
      {R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})", "tensor \"b\": the index maps it to s1.safetensors, which does not hold it"},
      {R"({"weight_map":{"a":"s1.safetensors"}})", ""},  // s2 never opened: nothing to contradict
      {R"({"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}})", "tensor \"b\": it is in"},
      {R"({"weight_map":{"a":"../s1.safetensors"}})", "tensor \"a\": its shard is not a plain file name"},
      {R"({"weight_map":{"a":"missing.safetensors"}})", "missing.safetensors: cannot open"},
      {R"({"weight_map":{}})", "\"weight_map\" is missing, empty"},
      {R"({"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}})", "duplicate"},
      {R"(not json)", "model.safetensors.index.json"},
  };
  for (const Case &c : cases) {
    write_file(path("model.safetensors.index.json"), c.index);
    drl_status s = drl_st_open(&st, dir_.c_str());
    if (c.want.empty()) {
      EXPECT_EQ(s, DRL_OK) << c.index << ": " << last_error();
      drl_st_close(&st);
    } else {
      EXPECT_NE(s, DRL_OK) << c.index;
      EXPECT_ERROR_HAS(c.want);
      EXPECT_EQ(st.count, 0);
    }
  }
}

// Each malformed file fails to open with a message naming the file and, where there is one, the tensor.
TEST_F(SafetensorsTest, MalformedFilesAreNamed) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string d8(8, '\0');
  struct Case {
    const char *what;
    std::string bytes, want;
  } cases[] = {
      {"too short", std::string("\x05\x00\x00", 3), "too short for the 8-byte header length"},
      {"huge header length", std::string("\x00\x00\x00\x00\x01\x00\x00\x00", 8) + "{}", "exceeds the limit"},
      {"truncated header", st_bytes("{" + ok_entry + "}", d8).substr(0, 20), "runs past the end of the file"},
      {"not an object", st_bytes("[1,2]", ""), "does not start with '{'"},
      {"bad JSON", st_bytes("{\"w\":", ""), "not valid JSON"},
      {"duplicate key", st_bytes("{" + ok_entry + "," + ok_entry + "}", d8), "duplicate"},
      {"unknown dtype", st_bytes(R"({"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", d8),
       "tensor \"w\": unknown dtype \"F7\""},
      {"bytes disagree", st_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
       "tensor \"w\": dtype F32 x shape gives 12 bytes"},
      {"negative dim", st_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
       "tensor \"w\": a dimension of \"shape\""},
      {"no offsets", st_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", d8), "tensor \"w\": \"data_offsets\" is missing"},
      {"hole", st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d8 + "1234"),
       "tensor \"w\": its data begins at 4, but the previous tensor ends at 0 (a hole)"},
      {"overlap",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
       "tensor \"b\": its data begins at 4, but the previous tensor \"a\" ends at 8 (an overlap)"},
      {"file too long", st_bytes("{" + ok_entry + "}", d8 + "x"), "the tensors end at byte 8 of the data section, the file holds 9"},
      {"file truncated", st_bytes("{" + ok_entry + "}", d8).substr(0, 8 + 2 + ok_entry.size() + 4),
       "the tensors end at byte 8 of the data section, the file holds 4"},
      {"metadata not strings", st_bytes(R"({"__metadata__":{"format":1}})", ""), "\"__metadata__\" value of \"format\""},
      {"F8 reads", st_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", d8), ""},
  };
  for (const Case &c : cases) {
    std::string file = path(std::string("bad_") + std::to_string(&c - cases) + ".safetensors");
    write_file(file, c.bytes);
    drl_safetensors st;
    drl_status s = drl_st_open(&st, file.c_str());
    if (c.want.empty()) {  // opens; reading it as fp32 is the error
      ASSERT_EQ(s, DRL_OK) << c.what << ": " << last_error();
      std::vector<float> out(8);
      EXPECT_EQ(drl_st_read_f32(&st, drl_st_find(&st, "w"), out.data()), DRL_ERR_UNSUPPORTED) << c.what;
      EXPECT_ERROR_HAS("tensor \"w\": dtype F8_E4M3 is not supported");
      drl_st_close(&st);
      continue;
    }
    EXPECT_NE(s, DRL_OK) << c.what;
    EXPECT_ERROR_HAS(c.want);
    EXPECT_ERROR_HAS(file);
    EXPECT_EQ(st.count, 0) << c.what;
    EXPECT_EQ(st.nfiles, 0) << c.what;
  }
}

TEST_F(SafetensorsTest, TheParserNeverReadsPastItsBuffer) {
  // Every prefix of a valid file is rejected (never read past, which ASan would see) and the whole one accepted.
  std::vector<float> a = random_normal(12, 1.0f, 3);
  drl_st_source src = {"a", a.data(), 2, {3, 4}};
  ASSERT_EQ(drl_st_write(path("a.safetensors").c_str(), &src, 1, "F32"), DRL_OK);
  std::ifstream in(path("a.safetensors"), std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t n = 0; n < all.size(); ++n) {
    std::vector<unsigned char> prefix(all.begin(), all.begin() + (long)n);
    drl_st_header h;
    EXPECT_NE(drl_st_parse("prefix", prefix.data(), n, &h), DRL_OK) << n;
    EXPECT_EQ(h.count, 0);
  }
  drl_st_header h;
  ASSERT_EQ(drl_st_parse("whole", reinterpret_cast<const unsigned char *>(all.data()), all.size(), &h), DRL_OK)
      << last_error();
  EXPECT_EQ(h.count, 1);
  drl_st_header_free(&h);
}

TEST_F(SafetensorsTest, WriterRefusesBadInputAndLeavesNothing) {
  std::vector<float> a(4, 1.0f);
  drl_st_source twice[2] = {{"a", a.data(), 1, {4}}, {"a", a.data(), 1, {4}}};
  EXPECT_EQ(drl_st_write(path("x.safetensors").c_str(), twice, 2, "F32"), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("tensor \"a\" is given twice");
  EXPECT_EQ(drl_st_write(path("x.safetensors").c_str(), twice, 1, "F16"), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("dynrl writes F32 or BF16");
  EXPECT_EQ(drl_st_write((dir_ + "/no/such/dir/x.safetensors").c_str(), twice, 1, "F32"), DRL_ERR_IO);
  EXPECT_TRUE(std::filesystem::is_empty(dir_)) << "no file and no temp file left behind";
}

// A file written by the reference library (bench/reference/safetensors_ref.py): F32, F16, I64, a scalar and an empty
// tensor, in the library's own order and padding.
TEST(Safetensors, ReadsTheReferenceLibrarysFile) {
  const std::string file = std::string(DRL_SOURCE_DIR) + "/tests/fixtures/safetensors/peer.safetensors";
  drl_safetensors st;
  ASSERT_EQ(drl_st_open(&st, file.c_str()), DRL_OK) << last_error();
  ASSERT_EQ(st.count, 5);
  std::vector<float> w = read_all(st, "model.w");
  ASSERT_EQ(w.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(w[i], (i - 5) * 0.375f) << i;
  const drl_st_tensor *wt = drl_st_find(&st, "model.w");
  EXPECT_EQ(wt->ndim, 2);
  EXPECT_EQ(wt->shape[0], 3);
  EXPECT_EQ(wt->shape[1], 4);
  std::vector<float> h = read_all(st, "model.h");
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(h[3]) && h[3] > 0);
  EXPECT_NEAR(h[4], 1.0 / 3.0, 1e-3);
  const drl_st_tensor *s = drl_st_find(&st, "model.s");
  EXPECT_EQ(s->ndim, 0);
  EXPECT_EQ(s->numel, 1);
  EXPECT_EQ(read_all(st, "model.s")[0], 7.5f);
  EXPECT_EQ(drl_st_find(&st, "model.e")->numel, 0);
  EXPECT_STREQ(drl_st_find(&st, "model.i")->dtype, "I64");
  drl_st_close(&st);
}
