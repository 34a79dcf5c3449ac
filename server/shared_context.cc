#include "wooly/server/shared_context.h"

#include <atomic>
#include <utility>

#include "spdlog/spdlog.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

std::atomic<uint64_t> g_next_instance{1};

// The context the calling thread was last bound to: which SharedContext and
// which of its generations. A thread rebinds when either differs.
struct ThreadBinding {
  uint64_t instance = 0;
  uint64_t generation = SharedContext::kUnbound;
};
thread_local ThreadBinding t_binding;

}  // namespace

SharedContext::SharedContext(GpuBackend* backend, UnrecoverableCallback on_unrecoverable)
    : backend_(backend),
      on_unrecoverable_(std::move(on_unrecoverable)),
      instance_(g_next_instance.fetch_add(1)) {}

// ------------------------------------------------------------------- Access

SharedContext::Access::Access(SharedContext* context,
                              uint64_t generation) ABSL_NO_THREAD_SAFETY_ANALYSIS
    : context_(context) {
  context_->access_mu_.ReaderLock();
  held_ = true;
  uint64_t current = 0;
  {
    absl::ReaderMutexLock lock(&context_->state_mu_);
    current = context_->generation_;
    generation_ = generation == kUnbound ? current : generation;
    result_ = context_->LostResultLocked(generation_);
  }
  if (result_ != CUDA_SUCCESS) {
    // Lost: nothing will touch the GPU, so hold nothing up.
    context_->access_mu_.ReaderUnlock();
    held_ = false;
    return;
  }
  if (t_binding.instance != context_->instance_ || t_binding.generation != current) {
    absl::Status s = context_->backend_->BindThread();
    if (!s.ok()) {
      spdlog::error("cannot bind the GPU context to a server thread: {}", s.ToString());
      result_ = ToCuResult(s);
      if (IsStickyContextError(result_)) {
        Observe(result_, [] { return std::string("binding a server thread"); });
      }
      if (result_ == CUDA_SUCCESS) result_ = CUDA_ERROR_UNKNOWN;
      return;  // the destructor releases the hold (and resets if needed)
    }
    t_binding = ThreadBinding{context_->instance_, current};
  }
}

SharedContext::Access::~Access() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (held_) context_->access_mu_.ReaderUnlock();
  held_ = false;
  if (must_reset_) context_->Recover(generation_);
}

void SharedContext::Access::Observe(CUresult result, absl::FunctionRef<std::string()> who) {
  if (!held_ || !IsStickyContextError(result)) return;
  if (context_->Fault(generation_, result, who())) must_reset_ = true;
}

void SharedContext::Access::Observe(const absl::Status& status,
                                    absl::FunctionRef<std::string()> who) {
  if (!status.ok()) Observe(ToCuResult(status), who);
}

bool SharedContext::Access::faulted() const { return context_->IsLost(generation_); }

// ------------------------------------------------------------ SharedContext

bool SharedContext::Fault(uint64_t generation, CUresult result, const std::string& who) {
  absl::MutexLock lock(&state_mu_);
  // Under an open Access the generation cannot have advanced; only the first
  // sticky result of a generation counts (later ones are its echoes).
  if (generation != generation_ || fault_ != CUDA_SUCCESS) return false;
  fault_ = result;
  fault_who_ = who;
  spdlog::error(
      "{} hit {}, a sticky error: the shared GPU context is lost for every session using it "
      "({} poisoned; their commands now get {} without touching the GPU); resetting the context",
      who, CuResultName(result), bound_, CuResultName(result));
  return true;
}

void SharedContext::Recover(uint64_t generation) {
  CUresult fault = CUDA_SUCCESS;
  {
    // Waits until no command is inside the context.
    absl::MutexLock exclusive(&access_mu_);
    std::string who;
    {
      absl::MutexLock lock(&state_mu_);
      // Already reset, or lost for good (a failed reset is not retried).
      if (generation != generation_ || fault_ == CUDA_SUCCESS || unrecoverable_) return;
      fault = fault_;
      who = fault_who_;
    }
    const absl::Status s = backend_->ResetContext();
    absl::MutexLock lock(&state_mu_);
    if (s.ok()) {
      lost_.push_back(fault);
      ++generation_;
      fault_ = CUDA_SUCCESS;
      fault_who_.clear();
      const size_t poisoned = bound_;
      bound_ = 0;
      ++resets_;
      spdlog::warn(
          "GPU context reset (reset #{}, after {} in {}): {} session(s) lost their GPU state and "
          "keep getting {}; new sessions are served normally",
          resets_, CuResultName(fault), who, poisoned, CuResultName(fault));
      return;
    }
    unrecoverable_ = true;
    spdlog::error(
        "resetting the GPU context after {} failed ({}): the context cannot be recovered in this "
        "process; every command and new session gets {} until the process is restarted",
        CuResultName(fault), s.ToString(), CuResultName(fault));
  }
  // Outside the locks: the owner starts shutting the process down.
  if (on_unrecoverable_) on_unrecoverable_(fault);
}

absl::Status SharedContext::EnsureUsable() {
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&state_mu_);
    if (fault_ == CUDA_SUCCESS) return absl::OkStatus();
    if (unrecoverable_) {
      return CuError(fault_, "the shared GPU context is lost and could not be reset");
    }
    generation = generation_;
  }
  Recover(generation);
  absl::MutexLock lock(&state_mu_);
  if (fault_ == CUDA_SUCCESS) return absl::OkStatus();
  return CuError(fault_, "the shared GPU context is unusable and could not be reset");
}

bool SharedContext::unrecoverable() const {
  absl::ReaderMutexLock lock(&state_mu_);
  return unrecoverable_;
}

void SharedContext::Bind(uint64_t generation) {
  absl::MutexLock lock(&state_mu_);
  if (generation == generation_) ++bound_;
}

void SharedContext::Unbind(uint64_t generation) {
  absl::MutexLock lock(&state_mu_);
  if (generation == generation_ && bound_ > 0) --bound_;
}

CUresult SharedContext::LostResultLocked(uint64_t generation) const {
  if (generation < lost_.size()) return lost_[generation];
  if (generation == generation_) return fault_;
  return CUDA_SUCCESS;  // kUnbound: nothing to lose
}

CUresult SharedContext::LostResult(uint64_t generation) const {
  absl::ReaderMutexLock lock(&state_mu_);
  return LostResultLocked(generation);
}

uint64_t SharedContext::resets() const {
  absl::ReaderMutexLock lock(&state_mu_);
  return resets_;
}

uint64_t SharedContext::generation() const {
  absl::ReaderMutexLock lock(&state_mu_);
  return generation_;
}

size_t SharedContext::bound_sessions() const {
  absl::ReaderMutexLock lock(&state_mu_);
  return bound_;
}

}  // namespace wooly::server
