// The one GPU context every session shares, and its recovery from sticky
// errors.
//
// A sticky error (IsStickyContextError, cu_status.h), such as a kernel
// dereferencing an invalid address, leaves the context unusable: the driver
// answers every later call in it with the same CUresult. All clients share
// that context, so one faulting kernel takes the GPU state of all of them.
// SharedContext keeps the server itself serving:
//
//  - Contexts are counted in generations. A session binds to the current
//    generation at Hello, when it creates its first GPU object.
//  - Every backend call the server makes runs inside an Access, a shared hold
//    on the context for the duration of one command. An Access that observes
//    a sticky result faults its generation.
//  - A faulted generation is lost for every session bound to it: their
//    commands are answered with the fault's CUresult without touching the GPU
//    (as the native driver answers every user of a faulted context), and
//    their cleanup drops bookkeeping only, because their objects die with the
//    context.
//  - The Access that saw the fault first resets the context when it closes:
//    it waits until no other Access is open (the exclusive side of the same
//    lock), calls GpuBackend::ResetContext, and starts the next generation.
//    Threads bind to the new context lazily, on their next Access.
//  - A failed reset is final: on a real driver the context cannot come back
//    in this process (cuda.h: after such errors "the process must be
//    terminated and relaunched"). Every command keeps getting the fault's
//    CUresult, new sessions are refused with it, nothing retries the reset,
//    and the `on_unrecoverable` callback tells the owner, which exits the
//    process (woolyd's supervisor then starts a new worker; daemon.h).
//
// Lock order: a session's mutex, then the access lock (shared by an Access,
// exclusive by a reset), then state_mu_, which is a leaf. A thread never opens
// an Access while it holds one: readers of an absl::Mutex block behind a
// waiting writer, so a nested Access could deadlock with a reset.
//
// Thread safety: all methods may be called from any thread at once.
#ifndef WOOLY_SERVER_SHARED_CONTEXT_H_
#define WOOLY_SERVER_SHARED_CONTEXT_H_

#include <cuda.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

class SharedContext {
 public:
  // The generation of a session that has not bound to one yet.
  static constexpr uint64_t kUnbound = ~uint64_t{0};

  // Called once, without any of this object's locks held, on the thread
  // whose reset of a faulted context failed; gets the fault's CUresult. It
  // must not block on server threads (they may be waiting for it) and must
  // not open an Access.
  using UnrecoverableCallback = std::function<void(CUresult fault)>;

  // `backend` is not owned and must outlive this object.
  explicit SharedContext(GpuBackend* backend, UnrecoverableCallback on_unrecoverable = nullptr);

  SharedContext(const SharedContext&) = delete;
  SharedContext& operator=(const SharedContext&) = delete;

  // One command's hold on the context (RAII). Not movable; use it on the
  // thread that opened it.
  class Access {
   public:
    // Opens an access for a session bound to `generation`, or to the current
    // generation when `generation` is kUnbound (Hello, admin queries). Binds
    // the calling thread to the current context when it is not yet.
    Access(SharedContext* context, uint64_t generation);
    // Closes the access; when it saw its generation's fault first, resets the
    // context before returning.
    ~Access();

    Access(const Access&) = delete;
    Access& operator=(const Access&) = delete;

    // True when backend calls may be made. Otherwise nothing may touch the
    // GPU and result() is what the command must answer: the sticky CUresult
    // of the lost context, or why the thread could not be bound.
    bool ok() const { return result_ == CUDA_SUCCESS; }
    CUresult result() const { return result_; }
    // The generation this access works in.
    uint64_t generation() const { return generation_; }

    // Notes the outcome of a backend call made through this access. A sticky
    // result faults the generation; `who` describes the call for the log
    // ("client 3 ('train', pid 42) LaunchKernel") and is called only then.
    void Observe(CUresult result, absl::FunctionRef<std::string()> who);
    void Observe(const absl::Status& status, absl::FunctionRef<std::string()> who);

    // True once this access's generation has faulted, through this access or
    // another: further backend calls can only fail.
    bool faulted() const;

   private:
    SharedContext* const context_;
    uint64_t generation_ = kUnbound;
    CUresult result_ = CUDA_SUCCESS;
    bool held_ = false;        // the shared side of access_mu_ is held
    bool must_reset_ = false;  // saw the fault first: resets at close
  };

  // For a session about to start: resets the context when its generation
  // faulted and no reset has run since (waiting for one in progress).
  // Returns the fault's CUresult as an error when the context is unusable,
  // at once once a reset has failed (unrecoverable()).
  absl::Status EnsureUsable();

  // True once a reset has failed: the context is lost for good in this
  // process, which should exit (see UnrecoverableCallback).
  bool unrecoverable() const;

  // A session started (Bind) or ended (Unbind) its work in `generation`; the
  // sessions bound to a generation are the ones its loss poisons.
  void Bind(uint64_t generation);
  void Unbind(uint64_t generation);

  // CUDA_SUCCESS while `generation` is usable; otherwise the sticky CUresult
  // that ended it (a faulted current generation counts as lost already).
  CUresult LostResult(uint64_t generation) const;
  bool IsLost(uint64_t generation) const { return LostResult(generation) != CUDA_SUCCESS; }

  // Successful context resets so far.
  uint64_t resets() const;
  // The current generation (0 until the first reset).
  uint64_t generation() const;
  // Sessions bound to the current generation.
  size_t bound_sessions() const;

 private:
  // Records the first fault of the current generation `generation`; true
  // when this call recorded it (the caller then owns the reset).
  bool Fault(uint64_t generation, CUresult result, const std::string& who);
  // Resets the context if `generation` is still current and faulted and no
  // reset has failed yet; calls on_unrecoverable_ when this reset fails.
  void Recover(uint64_t generation) ABSL_LOCKS_EXCLUDED(access_mu_, state_mu_);
  CUresult LostResultLocked(uint64_t generation) const ABSL_SHARED_LOCKS_REQUIRED(state_mu_);

  GpuBackend* const backend_;
  const UnrecoverableCallback on_unrecoverable_;
  // Process-unique, so a thread's binding record never matches another
  // SharedContext that happens to reuse this one's address.
  const uint64_t instance_;

  // Shared: an Access (backend calls in progress). Exclusive: a reset.
  absl::Mutex access_mu_;

  mutable absl::Mutex state_mu_;
  // Advances only while access_mu_ is held exclusively, so an open Access
  // always works in the generation it saw at open.
  uint64_t generation_ ABSL_GUARDED_BY(state_mu_) = 0;
  // The current generation's sticky result, until a reset succeeds.
  CUresult fault_ ABSL_GUARDED_BY(state_mu_) = CUDA_SUCCESS;
  std::string fault_who_ ABSL_GUARDED_BY(state_mu_);
  // lost_[g]: the result that ended generation g; lost_.size() == generation_.
  std::vector<CUresult> lost_ ABSL_GUARDED_BY(state_mu_);
  size_t bound_ ABSL_GUARDED_BY(state_mu_) = 0;
  uint64_t resets_ ABSL_GUARDED_BY(state_mu_) = 0;
  // A reset failed: the fault stays for the life of this object.
  bool unrecoverable_ ABSL_GUARDED_BY(state_mu_) = false;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_SHARED_CONTEXT_H_
