#include "session.h"

#include <time.h>
#include <unistd.h>

#include <cstdlib>

#include "log.h"
#include "wooly/proto/defaults.h"

namespace wooly::nvml {
namespace {

constexpr int32_t kCuSuccess = 0;

// A WOOLY_* setting (environment, then client config), else `fallback`.
std::string EnvOr(const char* name, const std::string& fallback) {
  std::string v = wire::Setting(name);
  return v.empty() ? fallback : v;
}

}  // namespace

Session& Session::Instance() {
  // Never destroyed: NVML calls may come from other libraries' destructors.
  static Session* const session = new Session();
  return *session;
}

uint64_t Session::NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

nvmlReturn_t Session::Init(unsigned int flags) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ > 0) {
    ++refcount_;
    return NVML_SUCCESS;
  }
  endpoint_ = EnvOr(wire::kEnvServer, wire::DefaultSessionEndpoint());
  identity_ = ObserverIdentityFromEnvironment();
  cache_ms_ = 100;
  if (const std::string c = wire::Setting(kEnvCacheMs); !c.empty()) {
    cache_ms_ = std::strtoull(c.c_str(), nullptr, 10);
  }
  // An empty marker is allowed (it removes the marker), so this one reads
  // the environment first as it always did.
  if (const char* marker = std::getenv(kEnvMarker); marker != nullptr) {
    marker_ = marker;
  } else if (std::string m = wire::Setting(kEnvMarker); !m.empty()) {
    marker_ = m;
  } else {
    marker_ = kDefaultMarker;
  }
  cached_ = false;
  warned_no_view_ = false;
  const nvmlReturn_t r = ConnectLocked(/*quiet=*/false);
  if (r == NVML_SUCCESS) {
    refcount_ = 1;
    return NVML_SUCCESS;
  }
  if (r == NVML_ERROR_DRIVER_NOT_LOADED && (flags & NVML_INIT_FLAG_NO_GPUS) != 0) {
    // Initialized with no devices, as asked; the node's driver version is
    // still worth reporting when this node has one.
    facts_ = DeviceFacts();
    HostFiles host;
    std::string text;
    if (host.Read("/proc/driver/nvidia/version", &text)) {
      facts_.driver_version = DriverVersionFromProc(text);
    }
    has_device_ = false;
    refcount_ = 1;
    return NVML_SUCCESS;
  }
  return r;
}

nvmlReturn_t Session::ConnectLocked(bool quiet) {
  wire::DeviceInfo info;
  std::string server_version, error;
  identity_.pid = static_cast<uint32_t>(::getpid());  // a forked child says who it is
  const ConnectFailure why =
      observer_.Connect(endpoint_, identity_, &info, &server_version, &error);
  const LogLevel level = quiet ? LogLevel::kWarn : LogLevel::kError;
  switch (why) {
    case ConnectFailure::kNone: {
      HostFiles host;
      facts_ = MakeDeviceFacts(info, marker_, observer_.is_unix() ? &host : nullptr);
      has_device_ = true;
      cached_ = false;
      NLOG_INFO("connected to woolyd %s at %s as an observer (%s)", server_version.c_str(),
                endpoint_.c_str(), facts_.name.c_str());
      return NVML_SUCCESS;
    }
    case ConnectFailure::kUnreachable:
      WOOLY_NVML_LOG(level,
                     "cannot reach woolyd at %s (%s): no GPU to report; start woolyd or set "
                     "%s to its session socket",
                     endpoint_.c_str(), error.c_str(), wire::kEnvServer);
      return NVML_ERROR_DRIVER_NOT_LOADED;
    case ConnectFailure::kVersionMismatch:
      WOOLY_NVML_LOG(level, "version mismatch with woolyd at %s: %s", endpoint_.c_str(),
                     error.c_str());
      return NVML_ERROR_LIB_RM_VERSION_MISMATCH;
    case ConnectFailure::kRefused:
      WOOLY_NVML_LOG(level, "woolyd at %s refused the NVML session: %s", endpoint_.c_str(),
                     error.c_str());
      return NVML_ERROR_UNKNOWN;
    case ConnectFailure::kBroken:
      break;
  }
  WOOLY_NVML_LOG(level, "handshake with woolyd at %s failed: %s", endpoint_.c_str(), error.c_str());
  return NVML_ERROR_UNKNOWN;
}

nvmlReturn_t Session::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  if (--refcount_ > 0) return NVML_SUCCESS;
  if (observer_.connected()) {
    if (observer_.owner_pid() == ::getpid()) {
      observer_.Goodbye();
    } else {
      observer_.Abandon();
    }
  }
  has_device_ = false;
  cached_ = false;
  return NVML_SUCCESS;
}

nvmlReturn_t Session::CheckInit() {
  std::lock_guard<std::mutex> lock(mu_);
  return refcount_ > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

nvmlReturn_t Session::CheckDevice(nvmlDevice_t device) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  if (!has_device_ || reinterpret_cast<DeviceSlot*>(device) != &slot_) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  return NVML_SUCCESS;
}

nvmlReturn_t Session::Facts(DeviceFacts* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  *out = facts_;
  return NVML_SUCCESS;
}

nvmlReturn_t Session::DeviceCount(unsigned int* count) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  *count = has_device_ ? 1 : 0;
  return NVML_SUCCESS;
}

nvmlReturn_t Session::HandleByIndex(unsigned int index, nvmlDevice_t* device) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  if (!has_device_ || index != 0) return NVML_ERROR_INVALID_ARGUMENT;
  *device = reinterpret_cast<nvmlDevice_t>(&slot_);
  return NVML_SUCCESS;
}

bool Session::SameNode() {
  std::lock_guard<std::mutex> lock(mu_);
  return refcount_ > 0 && has_device_ && observer_.is_unix();
}

nvmlReturn_t Session::View(TenantView* out, bool* full) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refcount_ == 0) return NVML_ERROR_UNINITIALIZED;
  if (!has_device_) return NVML_ERROR_INVALID_ARGUMENT;
  if (cached_ && cache_ms_ > 0 && NowMs() - cached_at_ms_ < cache_ms_) {
    *out = cached_view_;
    *full = cached_full_;
    return NVML_SUCCESS;
  }
  return QueryLocked(out, full);
}

nvmlReturn_t Session::QueryLocked(TenantView* out, bool* full) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    // A connection inherited across fork() belongs to the parent.
    if (observer_.connected() && observer_.owner_pid() != ::getpid()) observer_.Abandon();
    if (!observer_.connected() && ConnectLocked(/*quiet=*/true) != NVML_SUCCESS) {
      return NVML_ERROR_GPU_IS_LOST;
    }
    int32_t result = 0;
    std::vector<uint8_t> payload;
    if (!observer_.Call(wire::Op::kTenantView, wire::Writer(), &result, &payload)) continue;
    TenantView view;
    bool is_full = true;
    if (result == kCuSuccess) {
      wire::Reader r(payload.data(), payload.size());
      if (!ParseTenantView(r, &view)) {
        NLOG_ERROR("malformed tenant view from woolyd at %s", endpoint_.c_str());
        return NVML_ERROR_UNKNOWN;
      }
    } else {
      // A woolyd without the NVML view: memory from cuMemGetInfo's answer,
      // which is already the tenant's (its limit as total).
      if (!warned_no_view_) {
        warned_no_view_ = true;
        NLOG_WARN("woolyd at %s has no tenant view (CUresult %d); reporting memory only",
                  endpoint_.c_str(), static_cast<int>(result));
      }
      if (!observer_.Call(wire::Op::kMemGetInfo, wire::Writer(), &result, &payload)) continue;
      if (result != kCuSuccess) return NVML_ERROR_NOT_SUPPORTED;
      wire::Reader r(payload.data(), payload.size());
      const uint64_t free = r.Get<uint64_t>();
      const uint64_t total = r.Get<uint64_t>();
      if (!r.ok()) return NVML_ERROR_UNKNOWN;
      view.memory_total = total;
      view.memory_used = total > free ? total - free : 0;
      view.device_total = facts_.total_memory;
      view.device_free = free;
      is_full = false;
    }
    cached_view_ = view;
    cached_full_ = is_full;
    cached_at_ms_ = NowMs();
    cached_ = true;
    *out = std::move(view);
    *full = is_full;
    return NVML_SUCCESS;
  }
  return NVML_ERROR_GPU_IS_LOST;
}

}  // namespace wooly::nvml
