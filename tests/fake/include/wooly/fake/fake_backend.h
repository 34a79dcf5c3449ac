// A GpuBackend that runs entirely on the CPU, for CI machines without a GPU.
//
// Device memory: host RAM behind fake device addresses starting at
// kFakeDeviceBase, 256-byte aligned, never reused within one backend. The
// capacity is "virtual" (default 16 GiB): allocations are counted against it
// and refused with CUDA_ERROR_OUT_OF_MEMORY beyond it, but each block's host
// memory is only calloc'ed on first touch, so a large capacity costs nothing.
//
// Work runs synchronously on the calling thread: streams are always idle and
// events complete when recorded. Event timestamps come from an injected clock.
//
// Modules: the "fake module" image format, NUL-terminated text:
//
//   WOOLY-FAKE-MODULE v1
//   kernel <name>
//   global <name> <bytes>
//
// The first line must be exactly the magic line; then any number of
// `kernel` and `global` lines (blank lines are ignored). Anything else, cubins
// and PTX included, is CUDA_ERROR_INVALID_IMAGE. A `kernel` line names a
// kernel of the global registry below (looked up when the function is
// fetched and again at launch); a `global` line reserves a zeroed device
// variable of that size. Libraries use the same format.
//
// Thread safety: every method may be called from any thread at once. Kernels
// run without the backend's lock held; their `host` translator is safe to call.
#ifndef WOOLY_FAKE_FAKE_BACKEND_H_
#define WOOLY_FAKE_FAKE_BACKEND_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "wooly/proto/wire.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::fake {

inline constexpr uint64_t kFakeDeviceBase = 0x7f0000000000ull;
inline constexpr uint64_t kFakeAlignment = 256;
inline constexpr char kFakeModuleMagic[] = "WOOLY-FAKE-MODULE v1";

// What a fake kernel sees at launch.
struct FakeLaunch {
  uint32_t grid[3];
  uint32_t block[3];
  uint32_t shared_bytes;
  // The packed argument buffer, laid out by the kernel's `params`.
  absl::Span<const uint8_t> args;
  // Translates a device address range to host memory; nullptr when the range
  // is not inside one live allocation or global (the kernel should then fail
  // with CUDA_ERROR_ILLEGAL_ADDRESS, as a real GPU would fault).
  std::function<void*(uint64_t dptr, uint64_t bytes)> host;
  // Host memory of the global `name` of the launched function's module (what
  // a kernel reaches as a __device__ variable); nullptr when the module has
  // no such global or it is smaller than `bytes`.
  std::function<void*(const std::string& name, uint64_t bytes)> global;
};

struct FakeKernel {
  std::string name;
  std::vector<wire::ParamInfo> params;
  std::function<absl::Status(const FakeLaunch&)> run;
};

// Adds `kernel` to the process-wide registry. Thread-safe; registering a name
// again replaces the earlier kernel.
void RegisterFakeKernel(FakeKernel kernel);
// The registered kernel called `name`, if any. Thread-safe.
std::optional<FakeKernel> FindFakeKernel(const std::string& name);

// Builds a fake module image (NUL included) listing `kernels` and `globals`.
std::vector<uint8_t> MakeFakeModuleImage(
    const std::vector<std::string>& kernels,
    const std::vector<std::pair<std::string, uint64_t>>& globals = {});

struct FakeBackendOptions {
  uint64_t capacity_bytes = 16ull << 30;
  // Nanoseconds for event timestamps; defaults to a steady clock.
  std::function<uint64_t()> clock_ns;
  // The device name reported by GetDeviceInfo.
  std::string device_name = "Wooly Fake GPU";
};

class FakeBackend : public server::GpuBackend {
 public:
  explicit FakeBackend(FakeBackendOptions options = {});
  ~FakeBackend() override;

  // Counters for tests: objects alive right now. Allocations and bytes count
  // MemAlloc memory only (not module globals).
  size_t live_allocations() const;
  uint64_t bytes_allocated() const;
  size_t live_streams() const;  // excludes the legacy stream
  size_t live_events() const;
  size_t live_modules() const;  // includes modules owned by libraries
  size_t live_libraries() const;
  // Host memory behind a device range, as a kernel's `host` would give it;
  // nullptr when out of bounds. For tests.
  void* HostPointer(server::DevPtr ptr, uint64_t bytes);

  std::string Name() const override { return "fake"; }
  absl::Status BindThread() override { return absl::OkStatus(); }
  absl::StatusOr<wire::DeviceInfo> GetDeviceInfo() override;
  absl::StatusOr<server::MemInfo> MemGetInfo() override;

  absl::StatusOr<server::DevPtr> MemAlloc(uint64_t size) override;
  absl::Status MemFree(server::DevPtr ptr) override;
  absl::Status MemcpyHtoD(server::DevPtr dst, const void* src, uint64_t size, server::Handle stream,
                          bool async) override;
  absl::Status MemcpyDtoH(void* dst, server::DevPtr src, uint64_t size, server::Handle stream,
                          bool async) override;
  absl::Status MemcpyDtoD(server::DevPtr dst, server::DevPtr src, uint64_t size,
                          server::Handle stream, bool async) override;
  absl::Status Memcpy3D(const server::Copy3DParams& params, server::Handle stream,
                        bool async) override;
  absl::Status Memset(server::DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                      uint64_t width, uint64_t height, server::Handle stream, bool async) override;

  absl::StatusOr<server::Handle> ModuleLoadData(absl::Span<const uint8_t> image) override;
  absl::Status ModuleUnload(server::Handle module) override;
  absl::StatusOr<server::Handle> ModuleGetFunction(server::Handle module,
                                                   const std::string& name) override;
  absl::StatusOr<server::GlobalInfo> ModuleGetGlobal(server::Handle module,
                                                     const std::string& name) override;
  absl::StatusOr<uint32_t> ModuleGetFunctionCount(server::Handle module) override;
  absl::StatusOr<server::Handle> LibraryLoadData(absl::Span<const uint8_t> image) override;
  absl::Status LibraryUnload(server::Handle library) override;
  absl::StatusOr<server::Handle> LibraryGetKernel(server::Handle library,
                                                  const std::string& name) override;
  absl::StatusOr<server::Handle> LibraryGetModule(server::Handle library) override;
  absl::StatusOr<server::GlobalInfo> LibraryGetGlobal(server::Handle library,
                                                      const std::string& name) override;
  absl::StatusOr<server::Handle> KernelGetFunction(server::Handle kernel) override;

  absl::StatusOr<std::vector<wire::ParamInfo>> FuncGetParamLayout(server::Handle function) override;
  absl::StatusOr<int32_t> FuncGetAttribute(server::Handle function, int32_t attribute) override;
  absl::Status FuncSetAttribute(server::Handle function, int32_t attribute, int32_t value) override;
  absl::Status LaunchKernel(server::Handle function, const server::LaunchConfig& config,
                            absl::Span<const uint8_t> args) override;

  absl::StatusOr<server::Handle> StreamCreate(uint32_t flags, int32_t priority) override;
  absl::Status StreamDestroy(server::Handle stream) override;
  absl::Status StreamSynchronize(server::Handle stream) override;
  absl::Status StreamQuery(server::Handle stream) override;
  absl::Status StreamWaitEvent(server::Handle stream, server::Handle event,
                               uint32_t flags) override;
  absl::StatusOr<server::Handle> EventCreate(uint32_t flags) override;
  absl::Status EventRecord(server::Handle event, server::Handle stream, uint32_t flags) override;
  absl::Status EventSynchronize(server::Handle event) override;
  absl::Status EventQuery(server::Handle event) override;
  absl::StatusOr<float> EventElapsedTime(server::Handle start, server::Handle end) override;
  absl::Status EventDestroy(server::Handle event) override;
  absl::Status CtxSynchronize() override { return absl::OkStatus(); }

 private:
  // One block of fake device memory; host bytes appear on first touch.
  struct Block {
    uint64_t size = 0;
    bool global = false;  // a module global, not a MemAlloc allocation
    // Shared so a running kernel keeps the bytes alive even if freed meanwhile.
    std::shared_ptr<uint8_t> data;
  };
  struct Function {
    server::Handle module = 0;
    std::string name;
    std::map<int32_t, int32_t> attributes;  // values set by FuncSetAttribute
  };
  struct Module {
    std::vector<std::string> kernels;
    std::map<std::string, server::GlobalInfo> globals;
    std::map<std::string, server::Handle> functions;  // fetched so far
    server::Handle library = 0;                       // non-zero when a library owns it
  };
  struct Library {
    server::Handle module = 0;
    std::map<std::string, server::Handle> kernels;  // name -> kernel handle
  };
  struct Kernel {
    server::Handle library = 0;
    std::string name;
  };
  struct Event {
    uint32_t flags = 0;
    bool recorded = false;
    uint64_t time_ns = 0;
  };

  server::Handle NewHandle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_handle_++; }
  absl::Status CheckStream(server::Handle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Host bytes behind [ptr, ptr + bytes) inside one block, allocating them on
  // first touch. Errors: INVALID_VALUE out of bounds, OUT_OF_MEMORY when the
  // host allocation fails.
  absl::StatusOr<uint8_t*> Translate(server::DevPtr ptr, uint64_t bytes,
                                     std::shared_ptr<uint8_t>* keep_alive = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::DevPtr> Allocate(uint64_t size, bool global)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(server::DevPtr ptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::Handle> LoadModuleLocked(absl::Span<const uint8_t> image,
                                                  server::Handle library)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnloadModuleLocked(server::Handle module) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::Handle> GetFunctionLocked(server::Handle module, const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FakeBackendOptions options_;

  mutable absl::Mutex mu_;
  server::Handle next_handle_ ABSL_GUARDED_BY(mu_) = 0x1000;
  uint64_t next_address_ ABSL_GUARDED_BY(mu_) = kFakeDeviceBase;
  uint64_t used_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // allocations and globals
  std::map<server::DevPtr, Block> blocks_ ABSL_GUARDED_BY(mu_);
  std::set<server::Handle> streams_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Event> events_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Module> modules_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Library> libraries_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Kernel> kernels_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Function> functions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wooly::fake

#endif  // WOOLY_FAKE_FAKE_BACKEND_H_
