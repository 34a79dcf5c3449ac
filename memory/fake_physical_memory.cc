#include "wooly/memory/fake_physical_memory.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace wooly::memory {
namespace {

uint64_t AlignUp(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) / a * a; }

// Simulates a copy that died halfway.
void Scribble(std::vector<uint8_t>& dst) {
  std::fill(dst.begin(), dst.begin() + static_cast<ptrdiff_t>(dst.size() / 2),
            FakePhysicalMemory::kScribbleByte);
}

}  // namespace

FakePhysicalMemory::FakePhysicalMemory(uint64_t device_bytes, uint64_t host_bytes)
    : device_bytes_(device_bytes), host_bytes_(host_bytes) {}

void FakePhysicalMemory::Fail(Op op, int after, absl::Status status) {
  failures_.push_back({op, after, std::move(status)});
}

absl::Status FakePhysicalMemory::Check(Op op) {
  ++calls_[op];
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if (it->op != op) continue;
    if (it->after > 0) {
      --it->after;
      return absl::OkStatus();
    }
    absl::Status s = std::move(it->status);
    failures_.erase(it);
    return s;
  }
  return absl::OkStatus();
}

uint64_t FakePhysicalMemory::calls(Op op) const {
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

absl::StatusOr<uint64_t> FakePhysicalMemory::ReserveAddress(uint64_t bytes, uint64_t alignment) {
  if (absl::Status s = Check(Op::kReserveAddress); !s.ok()) return s;
  if (bytes == 0) return absl::InvalidArgumentError("empty reservation");
  uint64_t base = AlignUp(next_va_, std::max<uint64_t>(alignment, 1));
  next_va_ = base + bytes;
  reservations_[base] = bytes;
  return base;
}

absl::Status FakePhysicalMemory::FreeAddress(uint64_t base, uint64_t bytes) {
  if (absl::Status s = Check(Op::kFreeAddress); !s.ok()) return s;
  auto it = reservations_.find(base);
  if (it == reservations_.end() || it->second != bytes) {
    return absl::InvalidArgumentError("no such reservation");
  }
  auto m = mappings_.lower_bound(base);
  if (m != mappings_.end() && m->first < base + bytes) {
    return absl::FailedPreconditionError("reservation still has mappings");
  }
  reservations_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<PhysHandle> FakePhysicalMemory::Create(uint64_t bytes) {
  if (absl::Status s = Check(Op::kCreate); !s.ok()) return s;
  if (bytes == 0) return absl::InvalidArgumentError("empty allocation");
  if (bytes > device_bytes_ - device_used_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("fake device full: ", device_used_, " of ", device_bytes_, " used"));
  }
  PhysHandle h = next_id_++;
  handles_[h].assign(bytes, kFreshByte);
  device_used_ += bytes;
  return h;
}

absl::Status FakePhysicalMemory::Release(PhysHandle handle) {
  if (absl::Status s = Check(Op::kRelease); !s.ok()) return s;
  auto it = handles_.find(handle);
  if (it == handles_.end()) return absl::InvalidArgumentError("no such handle");
  for (const auto& [va, m] : mappings_) {
    if (m.handle == handle) return absl::FailedPreconditionError("handle still mapped");
  }
  device_used_ -= it->second.size();
  handles_.erase(it);
  return absl::OkStatus();
}

bool FakePhysicalMemory::InReservation(uint64_t va, uint64_t bytes) const {
  auto it = reservations_.upper_bound(va);
  if (it == reservations_.begin()) return false;
  --it;
  return va >= it->first && va + bytes <= it->first + it->second;
}

absl::Status FakePhysicalMemory::Map(uint64_t va, uint64_t bytes, PhysHandle handle,
                                     Access access) {
  if (absl::Status s = Check(Op::kMap); !s.ok()) return s;
  auto h = handles_.find(handle);
  if (h == handles_.end()) return absl::InvalidArgumentError("no such handle");
  if (h->second.size() != bytes) return absl::InvalidArgumentError("size differs from handle");
  if (!InReservation(va, bytes)) return absl::InvalidArgumentError("outside any reservation");
  auto next = mappings_.lower_bound(va);
  if (next != mappings_.end() && next->first < va + bytes) {
    return absl::FailedPreconditionError("range already mapped");
  }
  if (next != mappings_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.bytes > va) {
      return absl::FailedPreconditionError("range already mapped");
    }
  }
  mappings_[va] = {bytes, handle, access};
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::Unmap(uint64_t va, uint64_t bytes) {
  if (absl::Status s = Check(Op::kUnmap); !s.ok()) return s;
  auto it = mappings_.find(va);
  if (it == mappings_.end() || it->second.bytes != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("no mapping of ", bytes, " at ", va));
  }
  mappings_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<HostSlot> FakePhysicalMemory::AllocHost(uint64_t bytes) {
  if (absl::Status s = Check(Op::kAllocHost); !s.ok()) return s;
  if (bytes == 0) return absl::InvalidArgumentError("empty slot");
  if (bytes > host_bytes_ - host_used_) {
    return absl::ResourceExhaustedError("fake host pool full");
  }
  HostSlot slot = next_id_++;
  // Pinned host memory is not zeroed either.
  slots_[slot].assign(bytes, kFreshByte);
  host_used_ += bytes;
  return slot;
}

absl::Status FakePhysicalMemory::FreeHost(HostSlot slot) {
  if (absl::Status s = Check(Op::kFreeHost); !s.ok()) return s;
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::InvalidArgumentError("no such slot");
  host_used_ -= it->second.size();
  slots_.erase(it);
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::CopyToHost(PhysHandle src, HostSlot dst, uint64_t bytes) {
  auto h = handles_.find(src);
  auto s = slots_.find(dst);
  if (h == handles_.end() || s == slots_.end()) return absl::InvalidArgumentError("bad copy");
  if (h->second.size() != bytes || s->second.size() != bytes) {
    return absl::InvalidArgumentError("copy size mismatch");
  }
  if (absl::Status st = Check(Op::kCopyToHost); !st.ok()) {
    Scribble(s->second);
    return st;
  }
  s->second = h->second;
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::CopyFromHost(HostSlot src, PhysHandle dst, uint64_t bytes) {
  auto s = slots_.find(src);
  auto h = handles_.find(dst);
  if (h == handles_.end() || s == slots_.end()) return absl::InvalidArgumentError("bad copy");
  if (h->second.size() != bytes || s->second.size() != bytes) {
    return absl::InvalidArgumentError("copy size mismatch");
  }
  if (absl::Status st = Check(Op::kCopyFromHost); !st.ok()) {
    Scribble(h->second);
    return st;
  }
  h->second = s->second;
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::CopyDevice(PhysHandle src, PhysHandle dst, uint64_t bytes) {
  auto a = handles_.find(src);
  auto b = handles_.find(dst);
  if (a == handles_.end() || b == handles_.end() || src == dst) {
    return absl::InvalidArgumentError("bad copy");
  }
  if (a->second.size() != bytes || b->second.size() != bytes) {
    return absl::InvalidArgumentError("copy size mismatch");
  }
  if (absl::Status st = Check(Op::kCopyDevice); !st.ok()) {
    Scribble(b->second);
    return st;
  }
  b->second = a->second;
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::Write(PhysHandle dst, uint64_t offset,
                                       std::span<const uint8_t> bytes) {
  auto h = handles_.find(dst);
  if (h == handles_.end()) return absl::InvalidArgumentError("no such handle");
  if (offset > h->second.size() || bytes.size() > h->second.size() - offset) {
    return absl::OutOfRangeError("write past the handle");
  }
  if (absl::Status st = Check(Op::kWrite); !st.ok()) {
    Scribble(h->second);
    return st;
  }
  std::copy(bytes.begin(), bytes.end(), h->second.begin() + static_cast<ptrdiff_t>(offset));
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::Read(PhysHandle src, uint64_t offset, std::span<uint8_t> out) {
  if (absl::Status st = Check(Op::kRead); !st.ok()) return st;
  auto h = handles_.find(src);
  if (h == handles_.end()) return absl::InvalidArgumentError("no such handle");
  if (offset > h->second.size() || out.size() > h->second.size() - offset) {
    return absl::OutOfRangeError("read past the handle");
  }
  std::copy_n(h->second.begin() + static_cast<ptrdiff_t>(offset), out.size(), out.begin());
  return absl::OkStatus();
}

std::map<uint64_t, FakePhysicalMemory::Mapping>::const_iterator FakePhysicalMemory::MappingAt(
    uint64_t va) const {
  auto it = mappings_.upper_bound(va);
  if (it == mappings_.begin()) return mappings_.end();
  --it;
  return va < it->first + it->second.bytes ? it : mappings_.end();
}

bool FakePhysicalMemory::IsMapped(uint64_t va) const { return MappingAt(va) != mappings_.end(); }

absl::StatusOr<PhysHandle> FakePhysicalMemory::HandleAt(uint64_t va) const {
  auto it = MappingAt(va);
  if (it == mappings_.end()) return absl::NotFoundError("unmapped");
  return it->second.handle;
}

absl::StatusOr<Access> FakePhysicalMemory::AccessAt(uint64_t va) const {
  auto it = MappingAt(va);
  if (it == mappings_.end()) return absl::NotFoundError("unmapped");
  return it->second.access;
}

absl::Status FakePhysicalMemory::WriteVa(uint64_t va, std::span<const uint8_t> bytes) {
  // Check every byte first, so a faulting write changes nothing.
  for (uint64_t done = 0; done < bytes.size();) {
    auto it = MappingAt(va + done);
    if (it == mappings_.end()) return absl::NotFoundError(absl::StrCat("unmapped at ", va + done));
    if (it->second.access != Access::kReadWrite) {
      return absl::PermissionDeniedError(absl::StrCat("write to read-only mapping at ", va + done));
    }
    done += it->first + it->second.bytes - (va + done);
  }
  for (uint64_t done = 0; done < bytes.size();) {
    auto it = MappingAt(va + done);
    uint64_t off = va + done - it->first;
    uint64_t n = std::min<uint64_t>(bytes.size() - done, it->second.bytes - off);
    auto& dst = handles_.at(it->second.handle);
    std::copy_n(bytes.begin() + static_cast<ptrdiff_t>(done), n,
                dst.begin() + static_cast<ptrdiff_t>(off));
    done += n;
  }
  return absl::OkStatus();
}

absl::Status FakePhysicalMemory::ReadVa(uint64_t va, std::span<uint8_t> out) const {
  for (uint64_t done = 0; done < out.size();) {
    auto it = MappingAt(va + done);
    if (it == mappings_.end()) return absl::NotFoundError(absl::StrCat("unmapped at ", va + done));
    uint64_t off = va + done - it->first;
    uint64_t n = std::min<uint64_t>(out.size() - done, it->second.bytes - off);
    const auto& src = handles_.at(it->second.handle);
    std::copy_n(src.begin() + static_cast<ptrdiff_t>(off), n,
                out.begin() + static_cast<ptrdiff_t>(done));
    done += n;
  }
  return absl::OkStatus();
}

std::vector<uint8_t> FakePhysicalMemory::HandleBytes(PhysHandle handle) const {
  auto it = handles_.find(handle);
  return it == handles_.end() ? std::vector<uint8_t>{} : it->second;
}

absl::StatusOr<std::span<const uint8_t>> FakePhysicalMemory::HostBytes(HostSlot slot) const {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("unknown host slot ", slot));
  return std::span<const uint8_t>(it->second.data(), it->second.size());
}

std::vector<uint8_t> FakePhysicalMemory::SlotBytes(HostSlot slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? std::vector<uint8_t>{} : it->second;
}

}  // namespace wooly::memory
