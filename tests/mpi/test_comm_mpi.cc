// Collectives and data-parallel sums under mpirun (2, 3 and 4 ranks): host collectives, the reduce-scatter against
// the fixed rank tree computed from every rank's regenerated values, the gradient tree over shards against one
// process holding every shard, ZeRO-1 against the unsharded optimizer, and a timeout that names the collective.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mpi_main.h"

extern "C" {
#include "distributed/dp.h"
#include "engine/optim.h"
#include "kernels/philox.h"
#include "kernels/rank_sum.h"
#include "kernels/reduce.h"
}

drl_comm *g_comm = nullptr;

namespace {

// Rank r's value at element i: a normal scaled by 2^(8 (i % 5) - 16), so the order of a sum shows in its bits.
float value(int r, int64_t i, uint32_t salt = 0) {
  float z = drl_rng_normal(99, (uint32_t)r + 1000 * salt, drl_rng_tag(DRL_RNG_TEST, 7, 0), (uint64_t)i);
  return std::ldexp(z, (int)(8 * (i % 5)) - 16);
}

std::vector<float> values(int r, int64_t n, uint32_t salt = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(r, i, salt);
  return v;
}

// The tree sum over ranks 0..R-1 of value(r, i), computed here from regenerated values.
float tree_of_ranks(int R, int64_t i, uint32_t salt = 0) {
  std::vector<float> x(R);
  for (int r = 0; r < R; ++r) x[r] = value(r, i, salt);
  return drl_tree_sum_elem(x.data(), 1, R);
}

bool same_bits(const float *a, const float *b, int64_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

drl_device cpu() {
  drl_device d;
  EXPECT_EQ(drl_device_open(&d, DRL_BACKEND_CPU, 0), DRL_OK);
  return d;
}

}  // namespace

TEST(Comm, RanksAreConsistent) {
  REQUIRE_RANKS(2);
  std::vector<int32_t> all(g_comm->size * 2);
  int32_t mine[2] = {g_comm->rank, g_comm->size};
  ASSERT_EQ(drl_comm_allgather(g_comm, mine, sizeof mine, all.data()), DRL_OK) << drl_last_error();
  for (int r = 0; r < g_comm->size; ++r) {
    EXPECT_EQ(all[2 * r], r);
    EXPECT_EQ(all[2 * r + 1], g_comm->size);
  }
  EXPECT_GE(g_comm->local_rank, 0);
  EXPECT_LT(g_comm->local_rank, g_comm->local_size);
}

TEST(Comm, HostCollectives) {
  REQUIRE_RANKS(2);
  int R = g_comm->size, me = g_comm->rank;
  // allgatherv: rank r sends r + 1 bytes of value r.
  std::vector<size_t> counts(R);
  size_t total = 0;
  for (int r = 0; r < R; ++r) total += counts[r] = (size_t)r + 1;
  std::vector<uint8_t> mine(me + 1, (uint8_t)(10 + me)), all(total, 0);
  ASSERT_EQ(drl_comm_allgatherv(g_comm, mine.data(), mine.size(), all.data(), counts.data()), DRL_OK);
  for (size_t at = 0, r = 0; r < (size_t)R; at += counts[r], ++r)
    for (size_t k = 0; k < counts[r]; ++k) EXPECT_EQ(all[at + k], 10 + r) << "rank " << r;
  // gatherv to the last rank.
  std::vector<uint8_t> got(total, 0);
  ASSERT_EQ(drl_comm_gatherv(g_comm, mine.data(), mine.size(), got.data(), counts.data(), R - 1), DRL_OK);
  if (me == R - 1) {
    EXPECT_EQ(got, all);
  }
  // bcast from rank 1.
  uint64_t word = me == 1 ? 0x1234567890abcdefull : 0;
  ASSERT_EQ(drl_comm_bcast(g_comm, &word, sizeof word, 1), DRL_OK);
  EXPECT_EQ(word, 0x1234567890abcdefull);
  // sum_f64 in rank order, exact for integers.
  double x[2] = {(double)me, 1.0};
  ASSERT_EQ(drl_comm_sum_f64(g_comm, x, x, 2), DRL_OK);
  EXPECT_EQ(x[0], R * (R - 1) / 2.0);
  EXPECT_EQ(x[1], (double)R);
  EXPECT_EQ(drl_comm_barrier(g_comm), DRL_OK);
  // A count that disagrees with the counts array is refused before anything is sent.
  EXPECT_EQ(drl_comm_allgatherv(g_comm, mine.data(), mine.size() + 1, all.data(), counts.data()),
            DRL_ERR_INVALID_ARG);
}

TEST(Comm, ReduceScatterIsTheRankTree) {
  REQUIRE_RANKS(2);
  int R = g_comm->size, me = g_comm->rank;
  const int64_t n = 3 * 4096 + 1234;
  std::vector<int64_t> bounds(R + 1);
  drl_comm_even_bounds(n, R, 1000, bounds.data());  // uneven parts, not chunk-aligned
  for (int64_t scratch : {(int64_t)R * n, (int64_t)R * 777, (int64_t)R}) {  // one piece, many pieces, one element
    std::vector<float> buf = values(me, n), sc(scratch);
    ASSERT_EQ(drl_comm_reduce_scatter(g_comm, buf.data(), 0, n, bounds.data(), sc.data(), scratch), DRL_OK)
        << drl_last_error();
    int64_t bad = 0;
    for (int64_t i = bounds[me]; i < bounds[me + 1]; ++i) {
      float want = tree_of_ranks(R, i);
      bad += std::memcmp(&buf[i], &want, 4) != 0;
    }
    EXPECT_EQ(bad, 0) << "scratch " << scratch << ": elements of rank " << me << "'s part not the rank tree";
    // All-gathering the parts gives every rank the whole sum.
    ASSERT_EQ(drl_comm_allgather_ranges(g_comm, buf.data(), 0, n, bounds.data()), DRL_OK) << drl_last_error();
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = tree_of_ranks(R, i);
    EXPECT_TRUE(same_bits(buf.data(), want.data(), n)) << "scratch " << scratch;
  }
  // A sub-range leaves everything outside it as it was.
  std::vector<float> buf = values(me, n), sc((size_t)R * 500), orig = buf;
  const int64_t lo = 5000, hi = 9000;
  ASSERT_EQ(drl_comm_reduce_scatter(g_comm, buf.data(), lo, hi, bounds.data(), sc.data(), (int64_t)sc.size()), DRL_OK);
  ASSERT_EQ(drl_comm_allgather_ranges(g_comm, buf.data(), lo, hi, bounds.data()), DRL_OK);
  for (int64_t i = 0; i < n; ++i) {
    float want = i >= lo && i < hi ? tree_of_ranks(R, i) : orig[i];
    ASSERT_EQ(std::memcmp(&buf[i], &want, 4), 0) << "element " << i;
  }
}

TEST(Comm, AllreduceFastIsTheSumWithinRounding) {
  REQUIRE_RANKS(2);
  int R = g_comm->size;
  const int64_t n = 10000;
  std::vector<float> buf = values(g_comm->rank, n, 3);
  ASSERT_EQ(drl_comm_allreduce_fast(g_comm, buf.data(), n), DRL_OK);
  for (int64_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (int r = 0; r < R; ++r) exact += value(r, i, 3), mag += std::fabs(value(r, i, 3));
    EXPECT_NEAR(buf[i], exact, 4 * R * 6e-8 * mag) << i;
  }
}

// Shard s's gradient: a vector of its own.
std::vector<float> shard_grad(int s, int64_t n) { return values(s, n, 5); }

TEST(DataParallel, GradientTreeEqualsOneProcessWithEveryShard) {
  REQUIRE_RANKS(2);
  int R = g_comm->size;
  drl_device dev = cpu();
  const int64_t n = 2 * 4096 + 7;
  for (int k : {1, 2, 4}) {
    int S = R * k;
    drl_dp dp;
    drl_dp_options o = {S, 0, 1, 0};
    ASSERT_EQ(drl_dp_create(&dp, g_comm, &dev, n, &o), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_dp_local(&dp), k);
    std::vector<float> g(n);
    for (int j = 0; j < k; ++j) {
      g = shard_grad(drl_dp_first(&dp) + j, n);
      ASSERT_EQ(drl_dp_grads_push(&dp, g.data()), DRL_OK);
    }
    ASSERT_EQ(drl_dp_grads_reduce(&dp, g.data()), DRL_OK) << drl_last_error();
    // One process, every shard.
    drl_dp one;
    drl_dp_options o1 = {S, 0, 1, 0};
    ASSERT_EQ(drl_dp_create(&one, nullptr, &dev, n, &o1), DRL_OK);
    std::vector<float> h(n);
    for (int s = 0; s < S; ++s) {
      h = shard_grad(s, n);
      ASSERT_EQ(drl_dp_grads_push(&one, h.data()), DRL_OK);
    }
    ASSERT_EQ(drl_dp_grads_reduce(&one, h.data()), DRL_OK);
    EXPECT_TRUE(same_bits(g.data(), h.data(), n)) << S << " shards over " << R << " ranks";
    // And both are the tree of kernels/rank_sum.h over the shards.
    std::vector<float> leaves(S);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int s = 0; s < S; ++s) leaves[s] = value(s, i, 5);
      float want = drl_tree_sum_elem(leaves.data(), 1, S);
      bad += std::memcmp(&want, &h[i], 4) != 0;
    }
    EXPECT_EQ(bad, 0) << S << " shards";
    drl_dp_free(&one);
    drl_dp_free(&dp);
  }
  // Three shards per rank cannot be subtrees of the shard tree.
  drl_dp bad_dp;
  drl_dp_options o3 = {3 * R, 0, 1, 0};
  EXPECT_EQ(drl_dp_create(&bad_dp, g_comm, &dev, n, &o3), DRL_ERR_CONFIG);
  drl_dp_options o4 = {R + 1, 0, 1, 0};
  EXPECT_EQ(drl_dp_create(&bad_dp, g_comm, &dev, n, &o4), DRL_ERR_CONFIG);
}

TEST(DataParallel, ShardSumsAndGatherFollowShardOrder) {
  REQUIRE_RANKS(2);
  drl_device dev = cpu();
  int R = g_comm->size, k = 2, S = R * k;
  drl_dp dp;
  drl_dp_options o = {S, 0, 1, 0};
  ASSERT_EQ(drl_dp_create(&dp, g_comm, &dev, 16, &o), DRL_OK);
  // value per shard: 1e16 for shard 0, 1 for the others: the order decides what survives.
  std::vector<double> local(k * 2);
  for (int j = 0; j < k; ++j) {
    int s = drl_dp_first(&dp) + j;
    local[j * 2] = s == 0 ? 1e16 : 1.0;
    local[j * 2 + 1] = s;
  }
  double out[2];
  ASSERT_EQ(drl_dp_sum_shards(&dp, local.data(), 2, out), DRL_OK);
  double want = 0;
  for (int s = 0; s < S; ++s) want += s == 0 ? 1e16 : 1.0;
  EXPECT_EQ(out[0], want);
  EXPECT_EQ(out[1], S * (S - 1) / 2.0);
  void *all = nullptr;
  size_t total = 0;
  int32_t mine = g_comm->rank * 10;
  ASSERT_EQ(drl_dp_gather(&dp, &mine, sizeof mine, &all, &total, nullptr), DRL_OK);
  ASSERT_EQ(total, R * sizeof(int32_t));
  for (int r = 0; r < R; ++r) EXPECT_EQ(((int32_t *)all)[r], r * 10);
  free(all);
  drl_dp_free(&dp);
}

TEST(DataParallel, ZeroEqualsTheUnshardedOptimizer) {
  REQUIRE_RANKS(2);
  drl_device dev = cpu();
  int R = g_comm->size, me = g_comm->rank;
  drl_layout lay;
  ASSERT_EQ(drl_layout_init(&lay, 4), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "a", 3000, 5, 1), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "b", 77, 1, 0), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "c", 4096, 3, 1), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "d", 10, 10, 0), DRL_OK);
  const int64_t n = lay.total;
  drl_dp z, one;
  drl_dp_options oz = {0, 1, 1, 0}, o1 = {1, 0, 1, 0};
  ASSERT_EQ(drl_dp_create(&z, g_comm, &dev, n, &oz), DRL_OK);
  ASSERT_EQ(drl_dp_create(&one, nullptr, &dev, n, &o1), DRL_OK);
  int64_t lo, hi;
  drl_dp_optim_range(&z, n, &lo, &hi);
  EXPECT_EQ(lo % DRL_REDUCE_CHUNK, 0);
  EXPECT_LT(hi - lo, n) << "the parts must split the state";
  std::vector<float> p = values(77, n), q = p, m(hi - lo, 0.f), v(hi - lo, 0.f), m1(n, 0.f), v1(n, 0.f);
  std::vector<char> scratch((size_t)drl_reduce_scratch_bytes(&dev, n) + 1);
  for (int step = 1; step <= 3; ++step) {
    // Every rank's own gradient; the reference sums them in the rank tree itself.
    std::vector<float> g = values(me, n, 10 + step), g1(n);
    for (int64_t i = 0; i < n; ++i) g1[i] = tree_of_ranks(R, i, 10 + step);
    ASSERT_EQ(drl_dp_grads_reduce(&z, g.data()), DRL_OK) << drl_last_error();
    drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step};
    float nz = 0, n1 = 0;
    char bad[DRL_TENSOR_NAME_CAP];
    // Parameter sets over the test's buffers: rank's part [lo, hi) of the moments, and the whole.
    drl_params pz = {dev, lay, p.data(), g.data(), m.data(), v.data(), lo, hi, scratch.data()};
    drl_params p1 = {dev, lay, q.data(), g1.data(), m1.data(), v1.data(), 0, n, scratch.data()};
    ASSERT_EQ(drl_optim_step(&z, &pz, &hp, 0.0, &nz, bad), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_optim_step(&one, &p1, &hp, 0.0, &n1, bad), DRL_OK);
    EXPECT_EQ(std::memcmp(&nz, &n1, 4), 0) << "norm " << nz << " vs " << n1 << " at step " << step;
    EXPECT_TRUE(same_bits(p.data(), q.data(), n)) << "parameters differ at step " << step;
    EXPECT_TRUE(same_bits(m.data(), m1.data() + lo, hi - lo)) << "first moments differ at step " << step;
  }
  // The checkpoint's whole moment, gathered on rank 0.
  std::vector<float> full(n, -1.f);
  ASSERT_EQ(drl_dp_gather_optim(&z, &dev, n, v.data(), me == 0 ? full.data() : nullptr), DRL_OK);
  if (me == 0) {
    EXPECT_TRUE(same_bits(full.data(), v1.data(), n));
  }
  drl_dp_free(&z);
  drl_dp_free(&one);
  drl_layout_free(&lay);
}

TEST(Comm, TimeoutNamesTheCollectiveAndTheRank) {
  REQUIRE_RANKS(2);
  // Rank 0 waits 0.5 s for a barrier the others enter 3 s late: it must give up with a message, in time.
  if (g_comm->rank == 0) {
    double keep = g_comm->timeout_s;
    g_comm->timeout_s = 0.5;
    auto t0 = std::chrono::steady_clock::now();
    drl_status st = drl_comm_barrier(g_comm);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g_comm->timeout_s = keep;
    EXPECT_EQ(st, DRL_ERR_MPI);
    std::string msg = drl_last_error();
    EXPECT_NE(msg.find("barrier got no answer from its peers"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 0 of"), std::string::npos) << msg;
    EXPECT_GE(waited, 0.5);
    EXPECT_LT(waited, 2.8);
  } else {
    usleep(3000 * 1000);
    EXPECT_EQ(drl_comm_barrier(g_comm), DRL_OK);  // completes rank 0's abandoned barrier
  }
  EXPECT_EQ(drl_comm_barrier(g_comm), DRL_OK);  // the job is in step again
}

int main(int argc, char **argv) { return mpi_test_main(argc, argv, 60.0); }
