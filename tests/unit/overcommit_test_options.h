// The woolyd the overcommit and dedup tests run: a fake device of
// kFakeDeviceBytes (384 MiB of it for the pool after the reserve), 100 %
// overcommit, no scheduler, and waits for room that end only when a swap or
// command ends, never on the machine's speed.
#ifndef WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_
#define WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/server.h"

namespace wooly::testing {

inline constexpr uint64_t kFakeDeviceBytes = uint64_t{512} << 20;

// Session socket in `dir`; the admin socket too when `admin`.
inline server::ServerOptions OvercommitServerOptions(const std::string& dir, bool admin = true) {
  server::ServerOptions options;
  options.listen = {"unix:" + dir + "/woolyd.sock"};
  if (admin) options.admin = "unix:" + dir + "/admin.sock";
  options.scheduler = false;
  options.overcommit = true;
  options.overcommit_percent = 100;
  options.swap_idle_threshold = absl::Seconds(1);
  options.swap_wait_for_room = absl::InfiniteDuration();
  return options;
}

inline fake::FakeBackendOptions OvercommitFakeOptions() {
  fake::FakeBackendOptions fo;
  fo.capacity_bytes = kFakeDeviceBytes;
  return fo;
}

// Connects to `endpoint` and says hello with `settings`; a test failure
// (and nullptr) when either fails.
inline std::unique_ptr<TestClient> ConnectAndHello(
    const std::string& endpoint, const std::string& name, int priority,
    const std::vector<std::pair<std::string, std::string>>& settings, uint64_t* id) {
  auto c = TestClient::Connect(endpoint);
  EXPECT_NE(c, nullptr);
  if (c == nullptr) return nullptr;
  std::string message;
  EXPECT_EQ(c->HelloWith(name, priority, settings, id, &message), CUDA_SUCCESS) << message;
  return c;
}

// Client `id` as `server` lists it; a test failure when it is not listed.
inline server::ClientStatus ClientStatusOf(server::Server& server, uint64_t id) {
  for (const server::ClientStatus& c : server.Clients()) {
    if (c.client_id == id) return c;
  }
  ADD_FAILURE() << "no client " << id;
  return {};
}

}  // namespace wooly::testing

#endif  // WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_
