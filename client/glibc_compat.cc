// glibc symbols newer than the oldest glibc the client libraries support.
//
// libwooly and the NVML view link libstdc++ statically. Debian 12's
// libstdc++.a was built on glibc 2.36 and calls arc4random (new in 2.36) for
// std::random_device, so without this definition both libraries would
// import arc4random@GLIBC_2.36 and fail to load on glibc 2.35: Ubuntu 22.04,
// the base of the official PyTorch and vLLM images. A definition linked
// into the library itself satisfies libstdc++'s reference, and hidden
// visibility keeps it out of the exported surface. The highest glibc version
// the libraries need is checked by client_selfcontained.sh and
// nvml_selfcontained.sh.
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) noexcept {
  uint32_t value = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(&value);
  size_t got = 0;
  while (got < sizeof(value)) {
    const ssize_t n = ::getrandom(bytes + got, sizeof(value) - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // ENOSYS (seccomp, old kernels): fall back to /dev/urandom
    }
  }
  if (got < sizeof(value)) {
    const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && got < sizeof(value)) {
      const ssize_t n = ::read(fd, bytes + got, sizeof(value) - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
      } else if (!(n < 0 && errno == EINTR)) {
        break;
      }
    }
    if (fd >= 0) ::close(fd);
  }
  // glibc's arc4random aborts when no randomness can be had; so does this.
  if (got < sizeof(value)) std::abort();
  return value;
}
