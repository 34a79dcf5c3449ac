// The woolyd the overcommit and dedup tests run: a fake device of
// kFakeDeviceBytes (384 MiB of it for the pool after the reserve), 100 %
// overcommit, no scheduler, and waits for room that end only when a swap or
// command ends, never on the machine's speed.
#ifndef WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_
#define WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
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

}  // namespace wooly::testing

#endif  // WOOLY_TESTS_UNIT_OVERCOMMIT_TEST_OPTIONS_H_
