// Checkpoint files: round trip, layout checks that name the tensor, atomic replacement, malformed files.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "kernels/layout.h"
}

namespace {

drl_layout small_layout(int64_t wq_rows = 4) {
  drl_layout lay;
  EXPECT_EQ(drl_layout_init(&lay, 3), DRL_OK);
  EXPECT_EQ(drl_layout_add(&lay, "tok_emb", 5, 4, 1), DRL_OK);
  EXPECT_EQ(drl_layout_add(&lay, "layers.0.wq", wq_rows, 4, 1), DRL_OK);
  EXPECT_EQ(drl_layout_add(&lay, "final_norm", 4, 1, 0), DRL_OK);
  return lay;
}

struct Owned {
  drl_checkpoint ck{};
  std::vector<float> p, m, v;
  std::string cfg = "run:\n  seed: 9\n";
  explicit Owned(const drl_layout &lay, bool with_optim = true) {
    p.resize(lay.total);
    m.resize(lay.total);
    v.resize(lay.total);
    for (int64_t i = 0; i < lay.total; ++i) {
      p[i] = 0.5f * (float)i - 3.0f;
      m[i] = 1e-3f * (float)i;
      v[i] = 1e-6f * (float)(i * i);
    }
    ck.layout = lay;
    ck.params = p.data();
    ck.m = with_optim ? m.data() : nullptr;
    ck.v = with_optim ? v.data() : nullptr;
    ck.optim_step = 17;
    ck.trainer_step = 16;
    snprintf(ck.phase, sizeof ck.phase, "sft");
    ck.seed = 0xfedcba9876543210ull;
    ck.threads = 3;
    ck.config_yaml = &cfg[0];
  }
};

class Checkpoint : public TempDirTest {};

}  // namespace

TEST_F(Checkpoint, RoundTrip) {
  drl_layout lay = small_layout();
  Owned w(lay);
  ASSERT_EQ(drl_checkpoint_write(path("c.h5").c_str(), &w.ck), DRL_OK) << last_error();
  drl_checkpoint r;
  ASSERT_EQ(drl_checkpoint_read(path("c.h5").c_str(), &lay, &r), DRL_OK) << last_error();
  EXPECT_EQ(drl_layout_compare(&r.layout, &lay, "read", "written"), DRL_OK);
  EXPECT_EQ(0, memcmp(r.params, w.p.data(), lay.total * 4));
  EXPECT_EQ(0, memcmp(r.m, w.m.data(), lay.total * 4));
  EXPECT_EQ(0, memcmp(r.v, w.v.data(), lay.total * 4));
  EXPECT_EQ(r.optim_step, 17);
  EXPECT_EQ(r.trainer_step, 16);
  EXPECT_STREQ(r.phase, "sft");
  EXPECT_EQ(r.seed, 0xfedcba9876543210ull);
  EXPECT_EQ(r.threads, 3);
  EXPECT_EQ(std::string(r.config_yaml), w.cfg);
  EXPECT_FALSE(r.layout.tensors[2].decay);
  drl_checkpoint_free(&r);
  Owned no_optim(lay, false);
  ASSERT_EQ(drl_checkpoint_write(path("p.h5").c_str(), &no_optim.ck), DRL_OK);
  ASSERT_EQ(drl_checkpoint_read(path("p.h5").c_str(), nullptr, &r), DRL_OK) << last_error();
  EXPECT_EQ(r.m, nullptr);
  drl_checkpoint_free(&r);
  drl_layout_free(&lay);
}

TEST_F(Checkpoint, LayoutMismatchNamesTheTensor) {
  drl_layout lay = small_layout();
  Owned w(lay);
  ASSERT_EQ(drl_checkpoint_write(path("c.h5").c_str(), &w.ck), DRL_OK);
  drl_layout other = small_layout(8);
  drl_checkpoint r;
  EXPECT_EQ(drl_checkpoint_read(path("c.h5").c_str(), &other, &r), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("layers.0.wq");
  EXPECT_ERROR_HAS("[4, 4]");
  EXPECT_ERROR_HAS("[8, 4]");
  EXPECT_EQ(r.params, nullptr);
  drl_layout fewer;
  ASSERT_EQ(drl_layout_init(&fewer, 1), DRL_OK);
  ASSERT_EQ(drl_layout_add(&fewer, "tok_emb", 5, 4, 1), DRL_OK);
  EXPECT_EQ(drl_checkpoint_read(path("c.h5").c_str(), &fewer, &r), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("layers.0.wq");
  drl_layout_free(&fewer);
  drl_layout_free(&other);
  drl_layout_free(&lay);
}

TEST_F(Checkpoint, MalformedFilesAreErrorsAndWritesReplaceAtomically) {
  drl_layout lay = small_layout();
  Owned w(lay);
  std::string p = path("c.h5");
  ASSERT_EQ(drl_checkpoint_write(p.c_str(), &w.ck), DRL_OK);
  w.p[0] = 42.0f;
  w.ck.trainer_step = 99;
  ASSERT_EQ(drl_checkpoint_write(p.c_str(), &w.ck), DRL_OK);
  drl_checkpoint r;
  ASSERT_EQ(drl_checkpoint_read(p.c_str(), &lay, &r), DRL_OK);
  EXPECT_EQ(r.params[0], 42.0f);
  EXPECT_EQ(r.trainer_step, 99);
  drl_checkpoint_free(&r);
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t cut : {bytes.size() / 2, (size_t)100, (size_t)0}) {
    std::string q = path("cut.h5");
    std::ofstream(q, std::ios::binary).write(bytes.data(), (std::streamsize)cut);
    EXPECT_NE(drl_checkpoint_read(q.c_str(), &lay, &r), DRL_OK) << "cut at " << cut;
    EXPECT_ERROR_HAS("cut.h5");
    EXPECT_EQ(r.params, nullptr);
  }
  EXPECT_EQ(drl_checkpoint_read(path("missing.h5").c_str(), &lay, &r), DRL_ERR_IO);
  drl_layout_free(&lay);
}

TEST(Layout, CompareReportsFirstDifference) {
  drl_layout a = small_layout(), b = small_layout();
  EXPECT_EQ(drl_layout_compare(&a, &b, "a", "b"), DRL_OK);
  snprintf(b.tensors[2].name, DRL_TENSOR_NAME_CAP, "final_nrm");
  EXPECT_EQ(drl_layout_compare(&a, &b, "a", "b"), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("'final_norm' in a but 'final_nrm' in b");
  drl_layout big;
  ASSERT_EQ(drl_layout_init(&big, 1), DRL_OK);
  EXPECT_EQ(drl_layout_add(&big, "x", 1, 1, 0), DRL_OK);
  EXPECT_EQ(drl_layout_add(&big, "y", 1, 1, 0), DRL_ERR_INTERNAL);
  EXPECT_EQ(drl_layout_add(&a, std::string(60, 'n').c_str(), 1, 1, 0), DRL_ERR_INTERNAL);  // table full first
  drl_layout_free(&big);
  drl_layout_free(&a);
  drl_layout_free(&b);
}
