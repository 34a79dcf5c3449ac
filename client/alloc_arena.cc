#include "alloc_arena.h"

#include <iterator>
#include <utility>

namespace wooly::client {

void ArenaAllocator::AddArena(uint64_t base, uint64_t size, const void* owner) {
  // The driver only promises 256-byte alignment: blocks start at the first
  // multiple of kAlign, and the arena keeps its own base for freeing it.
  const uint64_t pad = (kAlign - base % kAlign) % kAlign;
  if (size < pad + kAlign) return;
  const uint64_t usable = (size - pad) / kAlign * kAlign;
  std::lock_guard<std::mutex> lock(mu_);
  State s;
  s.arena = Arena{base, size, owner};
  s.free.emplace(pad, usable);
  arenas_.emplace(base, std::move(s));
}

uint64_t ArenaAllocator::Allocate(uint64_t n, const void* owner) {
  if (n == 0 || n > (uint64_t{1} << 62)) return 0;
  const uint64_t want = (n + kAlign - 1) / kAlign * kAlign;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [base, s] : arenas_) {
    if (s.arena.owner != owner) continue;
    for (auto it = s.free.begin(); it != s.free.end(); ++it) {
      if (it->second < want) continue;
      const uint64_t offset = it->first;
      const uint64_t left = it->second - want;
      s.free.erase(it);
      if (left > 0) s.free.emplace(offset + want, left);
      blocks_.emplace(base + offset, Block{base, want});
      return base + offset;
    }
  }
  return 0;
}

bool ArenaAllocator::IsBlock(uint64_t ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocks_.count(ptr) != 0;
}

bool ArenaAllocator::InArena(uint64_t ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = arenas_.upper_bound(ptr);
  if (it == arenas_.begin()) return false;
  --it;
  return ptr - it->first < it->second.arena.size;
}

bool ArenaAllocator::Free(uint64_t ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto b = blocks_.find(ptr);
  if (b == blocks_.end()) return false;
  auto a = arenas_.find(b->second.arena_base);
  if (a != arenas_.end()) {
    std::map<uint64_t, uint64_t>& free = a->second.free;
    uint64_t offset = ptr - a->first;
    uint64_t len = b->second.size;
    // Merge with the free range after it, then with the one before it.
    auto next = free.lower_bound(offset);
    if (next != free.end() && next->first == offset + len) {
      len += next->second;
      next = free.erase(next);
    }
    if (next != free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        offset = prev->first;
        len += prev->second;
        free.erase(prev);
      }
    }
    free.emplace(offset, len);
  }
  blocks_.erase(b);
  return true;
}

std::vector<ArenaAllocator::Arena> ArenaAllocator::RemoveOwner(const void* owner) {
  std::vector<Arena> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = arenas_.begin(); it != arenas_.end();) {
    if (it->second.arena.owner != owner) {
      ++it;
      continue;
    }
    const Arena a = it->second.arena;
    out.push_back(a);
    blocks_.erase(blocks_.lower_bound(a.base), blocks_.lower_bound(a.base + a.size));
    it = arenas_.erase(it);
  }
  return out;
}

std::vector<ArenaAllocator::Arena> ArenaAllocator::Clear() {
  std::vector<Arena> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [base, s] : arenas_) out.push_back(s.arena);
  arenas_.clear();
  blocks_.clear();
  return out;
}

}  // namespace wooly::client
