// The process-wide state behind Wooly's libnvidia-ml.so.1: the nvmlInit
// reference count, the observer session with woolyd, the device's facts and
// the last tenant view.
//
// nvmlInit (count 0 -> 1) reads the environment, connects and keeps the
// Hello reply's DeviceInfo; nvmlShutdown (1 -> 0) says Goodbye. Dynamic
// numbers come from kTenantView, asked at most once per cache window
// ($WOOLY_NVML_CACHE_MS, default 100; 0 asks every time). A broken
// connection (woolyd restarted) or one inherited across fork() is reopened
// once per query before the query fails with NVML_ERROR_GPU_IS_LOST.
//
// Thread safety: every method may be called from any thread; one mutex
// serializes them (NVML queries are rare; a query waits for woolyd's reply
// under it).
#ifndef WOOLY_NVML_SESSION_H_
#define WOOLY_NVML_SESSION_H_

#include <cstdint>
#include <mutex>
#include <string>

#include "device.h"
#include "nvml_types.h"
#include "observer.h"

namespace wooly::nvml {

inline constexpr char kEnvCacheMs[] = "WOOLY_NVML_CACHE_MS";

// The one device handle: nvmlDevice_t points at it.
struct DeviceSlot {
  unsigned int index = 0;
};

class Session {
 public:
  static Session& Instance();

  nvmlReturn_t Init(unsigned int flags);
  nvmlReturn_t Shutdown();

  // NVML_SUCCESS when initialized; NVML_ERROR_UNINITIALIZED otherwise.
  nvmlReturn_t CheckInit();
  // Also checks that `device` is the handle this library gave out.
  nvmlReturn_t CheckDevice(nvmlDevice_t device);
  // Copies the facts (after CheckInit/CheckDevice succeeded).
  nvmlReturn_t Facts(DeviceFacts* out);
  // 1 when connected, 0 after nvmlInitWithFlags(NVML_INIT_FLAG_NO_GPUS)
  // found no woolyd.
  nvmlReturn_t DeviceCount(unsigned int* count);
  nvmlReturn_t HandleByIndex(unsigned int index, nvmlDevice_t* device);
  // The tenant view, from the cache when it is fresh enough. When woolyd
  // has no kTenantView, memory comes from kMemGetInfo and *full is false
  // (utilization and processes are then unknown).
  nvmlReturn_t View(TenantView* out, bool* full);
  // Whether woolyd is reached over a unix socket (same node: this node's
  // /proc describes the processes and the GPU).
  bool SameNode();

 private:
  Session() = default;

  nvmlReturn_t ConnectLocked(bool quiet);
  nvmlReturn_t QueryLocked(TenantView* out, bool* full);
  static uint64_t NowMs();

  std::mutex mu_;
  int refcount_ = 0;
  bool has_device_ = false;
  std::string endpoint_;
  std::string marker_;
  HelloIdentity identity_;
  Observer observer_;
  DeviceFacts facts_;
  DeviceSlot slot_;
  uint64_t cache_ms_ = 100;
  bool cached_ = false;
  bool cached_full_ = false;
  uint64_t cached_at_ms_ = 0;
  TenantView cached_view_;
  bool warned_no_view_ = false;
};

}  // namespace wooly::nvml

#endif  // WOOLY_NVML_SESSION_H_
