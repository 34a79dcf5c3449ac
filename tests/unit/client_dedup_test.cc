// libwooly's side of weight dedup (WOOLY_DEDUP=1; client/api_memory.cc,
// wire.h kDedupProbe) end to end against an in-process woolyd with
// overcommit on, on the fake backend: another client (speaking the framed
// protocol directly) uploads content first; libwooly's cuMemcpyHtoD of the
// same content hashes it per chunk, attaches the resident chunks without
// sending them, and sends the rest (a chunk of new content, which woolyd
// publishes after it landed (kDedupPublish), and a partial tail).
#include <cuda.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "driver.h"
#include "log.h"
#include "overcommit_test_options.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/server.h"

namespace wooly::client {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kChunk = 64 * kMiB;

std::vector<uint8_t> Content(int seed, uint64_t bytes = kChunk) {
  std::vector<uint8_t> v(bytes);
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(seed + 1);
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(v.data() + i, &x, 8);
  }
  return v;
}

class ClientDedupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevelForTesting(LogLevel::kOff);
    ResetForTesting();
    char tmpl[] = "/tmp/wooly-dedup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // 384 MiB physical: six chunks.
    server::ServerOptions options = testing::OvercommitServerOptions(dir_, /*admin=*/false);
    // A frozen clock: no client ever turns idle, so nothing here hinges on time.
    options.clock = [] { return absl::FromUnixSeconds(1'800'000'000); };
    absl::StatusOr<std::unique_ptr<server::Server>> s = server::Server::Start(
        options, std::make_unique<fake::FakeBackend>(testing::OvercommitFakeOptions()));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ::setenv("WOOLY_SERVER", server_->listen_addresses()[0].c_str(), 1);
    ::setenv("WOOLY_DEDUP", "1", 1);
    ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
    ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx_, 0), CUDA_SUCCESS);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  }
  void TearDown() override {
    ResetForTesting();
    server_.reset();
    ::unsetenv("WOOLY_DEDUP");
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string dir_;
  std::unique_ptr<server::Server> server_;
  CUcontext ctx_ = nullptr;
};

TEST_F(ClientDedupTest, ResidentChunksAreAttachedInsteadOfSent) {
  const std::vector<uint8_t> c0 = Content(1), c1 = Content(2), c7 = Content(7);
  // The first tenant uploads c0 and c1 (woolyd hashes and publishes them).
  auto first = testing::TestClient::Connect(server_->listen_addresses()[0]);
  ASSERT_NE(first, nullptr);
  std::string message;
  ASSERT_EQ(first->HelloWith("first", 2, {{"WOOLY_DEDUP", "1"}}, nullptr, &message), CUDA_SUCCESS)
      << message;
  uint64_t pf = 0;
  ASSERT_EQ(first->MemAlloc(2 * kChunk, &pf), CUDA_SUCCESS);
  ASSERT_EQ(first->HtoD(pf, c0.data(), kChunk), CUDA_SUCCESS);
  ASSERT_EQ(first->HtoD(pf + kChunk, c1.data(), kChunk), CUDA_SUCCESS);
  const uint64_t sent_before = server_->Status().memory.node.physical_used;
  EXPECT_EQ(sent_before, 2 * kChunk);

  // libwooly: c0 | c1 | c7 | a 1 MiB tail, in one cuMemcpyHtoD.
  const uint64_t n = 3 * kChunk + kMiB;
  std::vector<uint8_t> src(n);
  std::memcpy(src.data(), c0.data(), kChunk);
  std::memcpy(src.data() + kChunk, c1.data(), kChunk);
  std::memcpy(src.data() + 2 * kChunk, c7.data(), kChunk);
  std::memset(src.data() + 3 * kChunk, 0x3c, kMiB);
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 4 * kChunk), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyHtoD(d, src.data(), n), CUDA_SUCCESS);
  // Copies to known ranges are posted without a reply: wait for woolyd.
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  // c7 went the usual staged way and woolyd published it after it landed.
  EXPECT_EQ(DedupPublishStateForTesting(), 1);

  // c0 and c1 map the first tenant's chunks; c7 was published anew.
  const memory::NodeUsage node = server_->Status().memory.node;
  EXPECT_EQ(node.dedup_saved, 2 * kChunk);
  // first's 2 shared + c7 shared + the (private) fourth chunk.
  EXPECT_EQ(node.physical_used, 4 * kChunk);
  uint64_t shared = 0;
  for (const server::ClientStatus& c : server_->Clients()) {
    if (c.name != "first") shared = c.memory_shared;
  }
  EXPECT_EQ(shared, 3 * kChunk);

  // Every byte reads back (one chunk at a time: the fake copies within one
  // mapping).
  std::vector<uint8_t> back(kChunk);
  for (uint64_t at = 0; at < n; at += kChunk) {
    const uint64_t len = std::min(kChunk, n - at);
    ASSERT_EQ(cuMemcpyDtoH(back.data(), d + at, len), CUDA_SUCCESS);
    ASSERT_EQ(std::memcmp(back.data(), src.data() + at, len), 0) << "chunk at " << at;
  }
  // A write into an attached chunk is copy-on-write: the first tenant's
  // bytes stay.
  ASSERT_EQ(cuMemsetD8(d + 10, 0xee, 100), CUDA_SUCCESS);
  std::vector<uint8_t> theirs(4 * kMiB);
  ASSERT_EQ(first->DtoH(theirs.data(), pf, theirs.size()), CUDA_SUCCESS);
  EXPECT_EQ(std::memcmp(theirs.data(), c0.data(), theirs.size()), 0);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

}  // namespace
}  // namespace wooly::client
