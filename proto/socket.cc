#include "wooly/proto/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "wooly/proto/channel.h"

namespace wooly::wire {
namespace {

void SetErr(std::string* error, const std::string& what) {
  if (error) *error = what + ": " + std::strerror(errno);
}

bool ParsePort(const std::string& s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

bool ParseEndpoint(const std::string& text, Endpoint* out, std::string* error) {
  Endpoint ep;
  std::string rest = text;
  if (rest.rfind("unix:", 0) == 0) {
    ep.is_unix = true;
    ep.path = rest.substr(5);
  } else if (!rest.empty() && rest[0] == '/') {
    ep.is_unix = true;
    ep.path = rest;
  } else {
    if (rest.rfind("tcp:", 0) == 0) rest = rest.substr(4);
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      if (error) *error = "endpoint '" + text + "' is neither unix:/path nor [tcp:]host:port";
      return false;
    }
    ep.is_unix = false;
    ep.host = rest.substr(0, colon);
    if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']') {
      ep.host = ep.host.substr(1, ep.host.size() - 2);
    }
    if (!ParsePort(rest.substr(colon + 1), &ep.port)) {
      if (error) *error = "endpoint '" + text + "' has an invalid port";
      return false;
    }
  }
  if (ep.is_unix) {
    if (ep.path.empty() || ep.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      if (error) *error = "unix socket path '" + ep.path + "' is empty or too long";
      return false;
    }
  }
  *out = ep;
  return true;
}

std::string FormatEndpoint(const Endpoint& ep) {
  if (ep.is_unix) return "unix:" + ep.path;
  if (ep.host.find(':') != std::string::npos) {
    return "tcp:[" + ep.host + "]:" + std::to_string(ep.port);
  }
  return "tcp:" + ep.host + ":" + std::to_string(ep.port);
}

int Connect(const Endpoint& ep, std::string* error) {
  if (ep.is_unix) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      SetErr(error, "socket");
      return -1;
    }
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, ep.path.c_str(), ep.path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      SetErr(error, "connect " + ep.path);
      ::close(fd);
      return -1;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(ep.port);
  if (int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    if (error) *error = "resolve " + ep.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    SetErr(error, "connect " + ep.host + ":" + port);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

int Listen(const Endpoint& ep, unsigned mode, std::string* error) {
  if (ep.is_unix) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      SetErr(error, "socket");
      return -1;
    }
    ::unlink(ep.path.c_str());
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, ep.path.c_str(), ep.path.size() + 1);
    // Bind under a restrictive umask so the socket is never briefly open to all.
    const mode_t old = ::umask(0177);
    const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    ::umask(old);
    if (rc != 0) {
      SetErr(error, "bind " + ep.path);
      ::close(fd);
      return -1;
    }
    if (::chmod(ep.path.c_str(), mode) != 0 || ::listen(fd, 128) != 0) {
      SetErr(error, "listen " + ep.path);
      ::close(fd);
      return -1;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(ep.port);
  if (int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    if (error) *error = "resolve " + ep.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) break;
    SetErr(error, "bind " + ep.host + ":" + port);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

bool WriteFrame(int fd, uint16_t op, uint32_t seq, const void* body, size_t body_len,
                const void* tail, size_t tail_len) {
  SocketChannel ch(fd);
  return WriteFrameTo(ch, op, 0, seq, body, body_len, tail, tail_len);
}

bool ReadFull(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, c, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool ReadHeader(int fd, FrameHeader* h) {
  if (!ReadFull(fd, h, sizeof(*h))) return false;
  return h->magic == kMagic && h->length <= kMaxPayload + 4096;
}

const char* OpName(uint16_t op) {
  switch (static_cast<Op>(op & ~kReplyBit)) {
#define WOOLY_OP_NAME(x) \
  case Op::x:            \
    return #x + 1;
    WOOLY_OP_NAME(kHello)
    WOOLY_OP_NAME(kGoodbye)
    WOOLY_OP_NAME(kShmAttach)
    WOOLY_OP_NAME(kTenantView)
    WOOLY_OP_NAME(kMemAlloc)
    WOOLY_OP_NAME(kMemFree)
    WOOLY_OP_NAME(kMemGetInfo)
    WOOLY_OP_NAME(kMemGetAddressRange)
    WOOLY_OP_NAME(kMemcpyHtoD)
    WOOLY_OP_NAME(kMemcpyDtoH)
    WOOLY_OP_NAME(kMemcpyDtoD)
    WOOLY_OP_NAME(kMemset)
    WOOLY_OP_NAME(kMemcpy3D)
    WOOLY_OP_NAME(kMemcpyHtoDShared)
    WOOLY_OP_NAME(kMemcpyDtoHShared)
    WOOLY_OP_NAME(kHostShmRegister)
    WOOLY_OP_NAME(kHostShmUnregister)
    WOOLY_OP_NAME(kImageLoadCached)
    WOOLY_OP_NAME(kModuleLoadData)
    WOOLY_OP_NAME(kModuleGetFunction)
    WOOLY_OP_NAME(kModuleGetGlobal)
    WOOLY_OP_NAME(kModuleUnload)
    WOOLY_OP_NAME(kLibraryLoadData)
    WOOLY_OP_NAME(kLibraryGetKernel)
    WOOLY_OP_NAME(kLibraryGetModule)
    WOOLY_OP_NAME(kLibraryGetGlobal)
    WOOLY_OP_NAME(kLibraryUnload)
    WOOLY_OP_NAME(kKernelGetFunction)
    WOOLY_OP_NAME(kFuncGetAttribute)
    WOOLY_OP_NAME(kFuncSetAttribute)
    WOOLY_OP_NAME(kModuleGetFunctionCount)
    WOOLY_OP_NAME(kLaunchKernel)
    WOOLY_OP_NAME(kStreamCreate)
    WOOLY_OP_NAME(kStreamDestroy)
    WOOLY_OP_NAME(kStreamSynchronize)
    WOOLY_OP_NAME(kStreamQuery)
    WOOLY_OP_NAME(kStreamWaitEvent)
    WOOLY_OP_NAME(kEventCreate)
    WOOLY_OP_NAME(kEventRecord)
    WOOLY_OP_NAME(kEventSynchronize)
    WOOLY_OP_NAME(kEventQuery)
    WOOLY_OP_NAME(kEventElapsedTime)
    WOOLY_OP_NAME(kEventDestroy)
    WOOLY_OP_NAME(kCtxSynchronize)
    // Graphs and stream capture (140-179).
    WOOLY_OP_NAME(kStreamBeginCapture)
    WOOLY_OP_NAME(kStreamEndCapture)
    WOOLY_OP_NAME(kStreamGetCaptureInfo)
    WOOLY_OP_NAME(kStreamUpdateCaptureDependencies)
    WOOLY_OP_NAME(kGraphCreate)
    WOOLY_OP_NAME(kGraphDestroy)
    WOOLY_OP_NAME(kGraphInstantiate)
    WOOLY_OP_NAME(kGraphExecDestroy)
    WOOLY_OP_NAME(kGraphLaunch)
    WOOLY_OP_NAME(kGraphUpload)
    WOOLY_OP_NAME(kGraphGetNodes)
    WOOLY_OP_NAME(kGraphNodeGetDependencies)
    WOOLY_OP_NAME(kGraphKernelNodeGetParams)
    WOOLY_OP_NAME(kGraphKernelNodeSetParams)
    WOOLY_OP_NAME(kGraphAddKernelNode)
    WOOLY_OP_NAME(kGraphExecKernelNodeSetParams)
    WOOLY_OP_NAME(kGraphDebugDotPrint)
    // Memory extensions (90-139).
    WOOLY_OP_NAME(kMemAllocAsync)
    WOOLY_OP_NAME(kMemFreeAsync)
    WOOLY_OP_NAME(kMemPoolCreate)
    WOOLY_OP_NAME(kMemPoolDestroy)
    WOOLY_OP_NAME(kMemPoolSetAttribute)
    WOOLY_OP_NAME(kMemPoolGetAttribute)
    WOOLY_OP_NAME(kMemPoolTrimTo)
    WOOLY_OP_NAME(kMemGetAllocationGranularity)
    WOOLY_OP_NAME(kMemAddressReserve)
    WOOLY_OP_NAME(kMemAddressFree)
    WOOLY_OP_NAME(kMemCreate)
    WOOLY_OP_NAME(kMemRelease)
    WOOLY_OP_NAME(kMemMap)
    WOOLY_OP_NAME(kMemUnmap)
    WOOLY_OP_NAME(kMemSetAccess)
    WOOLY_OP_NAME(kMemGetAccess)
    WOOLY_OP_NAME(kMemGetAllocationPropertiesFromHandle)
    WOOLY_OP_NAME(kMemRetainAllocationHandle)
    WOOLY_OP_NAME(kOccupancyMaxActiveBlocks)
    WOOLY_OP_NAME(kOccupancyMaxPotentialBlockSize)
    WOOLY_OP_NAME(kOccupancyAvailableDynamicSMem)
    WOOLY_OP_NAME(kOccupancyMaxActiveClusters)
    WOOLY_OP_NAME(kCtxGetLimit)
    WOOLY_OP_NAME(kCtxSetLimit)
    WOOLY_OP_NAME(kFuncSetCacheConfig)
    WOOLY_OP_NAME(kFuncSetSharedMemConfig)
    WOOLY_OP_NAME(kTensorMapEncodeTiled)
    WOOLY_OP_NAME(kTensorMapEncodeIm2col)
    WOOLY_OP_NAME(kTensorMapReplaceAddress)
    WOOLY_OP_NAME(kDedupProbe)
    WOOLY_OP_NAME(kDedupPublish)
#undef WOOLY_OP_NAME
  }
  return "?";
}

}  // namespace wooly::wire
