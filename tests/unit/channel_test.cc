#include "wooly/proto/channel.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::wire {
namespace {

// A client and a server end over a socketpair, attached as woolyd does.
struct Pair {
  int sv[2] = {-1, -1};
  std::unique_ptr<ShmChannel> client, server;

  explicit Pair(uint64_t ring_bytes) {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::string error;
    client = ShmChannel::Create(ring_bytes, sv[0], &error);
    EXPECT_NE(client, nullptr) << error;
    EXPECT_TRUE(SendFd(sv[0], client->memfd()));
    const int fd = RecvFd(sv[1]);
    EXPECT_GE(fd, 0);
    server = ShmChannel::Attach(fd, sv[1], &error);
    EXPECT_NE(server, nullptr) << error;
  }
  ~Pair() {
    client.reset();
    server.reset();
    for (int fd : sv) {
      if (fd >= 0) ::close(fd);
    }
  }
};

TEST(ShmChannelTest, FramesLargerThanTheRingStreamThrough) {
  Pair p(4096);  // the smallest ring: every frame below wraps many times
  std::vector<uint8_t> body(100'000);
  std::iota(body.begin(), body.end(), 0);
  constexpr int kFrames = 20;
  std::thread writer([&] {
    for (int i = 0; i < kFrames; ++i) {
      ASSERT_TRUE(WriteFrameTo(*p.client, 7, kFlagNoReply, i, body.data(), body.size() - i));
    }
  });
  for (int i = 0; i < kFrames; ++i) {
    FrameHeader h;
    ASSERT_TRUE(p.server->Read(&h, sizeof(h)));
    EXPECT_EQ(h.magic, kMagic);
    EXPECT_EQ(h.seq, static_cast<uint32_t>(i));
    EXPECT_EQ(h.flags, kFlagNoReply);
    ASSERT_EQ(h.length, body.size() - i);
    std::vector<uint8_t> got(h.length);
    ASSERT_TRUE(p.server->Read(got.data(), got.size()));
    EXPECT_EQ(0, std::memcmp(got.data(), body.data(), got.size())) << "frame " << i;
  }
  writer.join();
}

TEST(ShmChannelTest, RepliesFlowTheOtherWay) {
  Pair p(1 << 16);
  const char msg[] = "reply";
  ASSERT_TRUE(WriteFrameTo(*p.server, 0x8001, 0, 9, msg, sizeof(msg)));
  FrameHeader h;
  ASSERT_TRUE(p.client->Read(&h, sizeof(h)));
  EXPECT_EQ(h.op, 0x8001);
  char got[sizeof(msg)];
  ASSERT_TRUE(p.client->Read(got, sizeof(got)));
  EXPECT_STREQ(got, msg);
}

TEST(ShmChannelTest, ReaderNoticesADeadPeer) {
  Pair p(1 << 16);
  ShmWaitPolicy fast;
  fast.spin_ns = 0;
  p.server->set_policy(fast);
  ::close(p.sv[0]);  // the client process is gone
  p.sv[0] = -1;
  char c;
  EXPECT_FALSE(p.server->Read(&c, 1));
}

TEST(ShmChannelTest, NonsenseIndicesBreakTheChannel) {
  Pair p(4096);
  // A client that scribbles on the command ring's head.
  auto* h = static_cast<ShmChannelHeader*>(::mmap(
      nullptr, ShmChannelBytes(4096), PROT_READ | PROT_WRITE, MAP_SHARED, p.client->memfd(), 0));
  ASSERT_NE(h, MAP_FAILED);
  h->c2s.head.store(1ull << 40);
  char c;
  EXPECT_FALSE(p.server->Read(&c, 1));
  ::munmap(h, ShmChannelBytes(4096));
}

TEST(ShmChannelTest, AttachRejectsABadHeader) {
  const int fd = ::memfd_create("bad", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, ShmChannelBytes(4096)), 0);  // all zeros: no magic
  std::string error;
  EXPECT_EQ(ShmChannel::Attach(fd, -1, &error), nullptr);
  EXPECT_NE(error.find("bad header"), std::string::npos) << error;
}

TEST(ShmChannelTest, RecvFdRejectsAPlainByte) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_EQ(::write(sv[0], "F", 1), 1);  // no descriptor attached
  EXPECT_EQ(RecvFd(sv[1]), -1);
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace wooly::wire
