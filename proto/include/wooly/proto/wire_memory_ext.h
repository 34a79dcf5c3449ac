// Payload pieces of the memory-extension ops of wire.h (ops 90-139): memory
// pools, virtual memory management and tensor maps. Like wire.h, this has no
// dependencies beyond the C++ standard library (libwooly includes it).
//
// Every struct travels field by field, little-endian, fixed size (arrays are
// always sent whole, unused entries zero), so no padding reaches the wire.
#ifndef WOOLY_PROTO_WIRE_MEMORY_EXT_H_
#define WOOLY_PROTO_WIRE_MEMORY_EXT_H_

#include <cstddef>
#include <cstdint>

#include "wooly/proto/wire.h"

namespace wooly::wire {

// A CUmemAllocationProp (cuMemCreate, cuMemGetAllocationGranularity) without
// the Windows-only pointer: (u32 type, u32 handle_types, i32 location_type,
// i32 location_id, u8 compression, u8 rdma_capable, u16 usage).
struct MemAllocProps {
  uint32_t type = 0;
  uint32_t handle_types = 0;
  int32_t location_type = 0;
  int32_t location_id = 0;
  uint8_t compression = 0;
  uint8_t rdma_capable = 0;
  uint16_t usage = 0;
  friend bool operator==(const MemAllocProps&, const MemAllocProps&) = default;
};

// A CUmemPoolProps without the Windows-only pointer: (u32 alloc_type,
// u32 handle_types, i32 location_type, i32 location_id, u64 max_size,
// u16 usage).
struct MemPoolProps {
  uint32_t alloc_type = 0;
  uint32_t handle_types = 0;
  int32_t location_type = 0;
  int32_t location_id = 0;
  uint64_t max_size = 0;
  uint16_t usage = 0;
  friend bool operator==(const MemPoolProps&, const MemPoolProps&) = default;
};

// The opaque CUtensorMap and the largest tensor rank it encodes.
inline constexpr size_t kTensorMapBytes = 128;
inline constexpr uint32_t kMaxTensorRank = 5;

// cuTensorMapEncodeTiled's arguments: (u32 data_type, u32 rank, u64 address,
// u64 dims[5], u64 strides[4], u32 box[5], u32 element_strides[5],
// u32 interleave, u32 swizzle, u32 l2_promotion, u32 oob_fill). strides[i]
// is the byte stride of dimension i + 1 (dimension 0 is dense).
struct TensorMapTiled {
  uint32_t data_type = 0;
  uint32_t rank = 0;
  uint64_t address = 0;
  uint64_t dims[kMaxTensorRank] = {};
  uint64_t strides[kMaxTensorRank - 1] = {};
  uint32_t box[kMaxTensorRank] = {};
  uint32_t element_strides[kMaxTensorRank] = {};
  uint32_t interleave = 0;
  uint32_t swizzle = 0;
  uint32_t l2_promotion = 0;
  uint32_t oob_fill = 0;
};

// cuTensorMapEncodeIm2col's arguments: as TensorMapTiled without box, plus
// (i32 lower[3], i32 upper[3], u32 channels_per_pixel, u32 pixels_per_column)
// after the strides. lower/upper hold rank - 2 corner offsets.
struct TensorMapIm2col {
  uint32_t data_type = 0;
  uint32_t rank = 0;
  uint64_t address = 0;
  uint64_t dims[kMaxTensorRank] = {};
  uint64_t strides[kMaxTensorRank - 1] = {};
  int32_t lower[kMaxTensorRank - 2] = {};
  int32_t upper[kMaxTensorRank - 2] = {};
  uint32_t channels_per_pixel = 0;
  uint32_t pixels_per_column = 0;
  uint32_t element_strides[kMaxTensorRank] = {};
  uint32_t interleave = 0;
  uint32_t swizzle = 0;
  uint32_t l2_promotion = 0;
  uint32_t oob_fill = 0;
};

inline void PutMemAllocProps(Writer& w, const MemAllocProps& p) {
  w.Put<uint32_t>(p.type).Put<uint32_t>(p.handle_types).Put<int32_t>(p.location_type);
  w.Put<int32_t>(p.location_id).Put<uint8_t>(p.compression).Put<uint8_t>(p.rdma_capable);
  w.Put<uint16_t>(p.usage);
}
inline MemAllocProps GetMemAllocProps(Reader& r) {
  MemAllocProps p;
  p.type = r.Get<uint32_t>();
  p.handle_types = r.Get<uint32_t>();
  p.location_type = r.Get<int32_t>();
  p.location_id = r.Get<int32_t>();
  p.compression = r.Get<uint8_t>();
  p.rdma_capable = r.Get<uint8_t>();
  p.usage = r.Get<uint16_t>();
  return p;
}

inline void PutMemPoolProps(Writer& w, const MemPoolProps& p) {
  w.Put<uint32_t>(p.alloc_type).Put<uint32_t>(p.handle_types).Put<int32_t>(p.location_type);
  w.Put<int32_t>(p.location_id).Put<uint64_t>(p.max_size).Put<uint16_t>(p.usage);
}
inline MemPoolProps GetMemPoolProps(Reader& r) {
  MemPoolProps p;
  p.alloc_type = r.Get<uint32_t>();
  p.handle_types = r.Get<uint32_t>();
  p.location_type = r.Get<int32_t>();
  p.location_id = r.Get<int32_t>();
  p.max_size = r.Get<uint64_t>();
  p.usage = r.Get<uint16_t>();
  return p;
}

namespace internal {
template <typename T, size_t N>
inline void PutArray(Writer& w, const T (&a)[N]) {
  for (const T& v : a) w.Put<T>(v);
}
template <typename T, size_t N>
inline void GetArray(Reader& r, T (&a)[N]) {
  for (T& v : a) v = r.Get<T>();
}
}  // namespace internal

inline void PutTensorMapTiled(Writer& w, const TensorMapTiled& t) {
  w.Put<uint32_t>(t.data_type).Put<uint32_t>(t.rank).Put<uint64_t>(t.address);
  internal::PutArray(w, t.dims);
  internal::PutArray(w, t.strides);
  internal::PutArray(w, t.box);
  internal::PutArray(w, t.element_strides);
  w.Put<uint32_t>(t.interleave).Put<uint32_t>(t.swizzle).Put<uint32_t>(t.l2_promotion);
  w.Put<uint32_t>(t.oob_fill);
}
inline TensorMapTiled GetTensorMapTiled(Reader& r) {
  TensorMapTiled t;
  t.data_type = r.Get<uint32_t>();
  t.rank = r.Get<uint32_t>();
  t.address = r.Get<uint64_t>();
  internal::GetArray(r, t.dims);
  internal::GetArray(r, t.strides);
  internal::GetArray(r, t.box);
  internal::GetArray(r, t.element_strides);
  t.interleave = r.Get<uint32_t>();
  t.swizzle = r.Get<uint32_t>();
  t.l2_promotion = r.Get<uint32_t>();
  t.oob_fill = r.Get<uint32_t>();
  return t;
}

inline void PutTensorMapIm2col(Writer& w, const TensorMapIm2col& t) {
  w.Put<uint32_t>(t.data_type).Put<uint32_t>(t.rank).Put<uint64_t>(t.address);
  internal::PutArray(w, t.dims);
  internal::PutArray(w, t.strides);
  internal::PutArray(w, t.lower);
  internal::PutArray(w, t.upper);
  w.Put<uint32_t>(t.channels_per_pixel).Put<uint32_t>(t.pixels_per_column);
  internal::PutArray(w, t.element_strides);
  w.Put<uint32_t>(t.interleave).Put<uint32_t>(t.swizzle).Put<uint32_t>(t.l2_promotion);
  w.Put<uint32_t>(t.oob_fill);
}
inline TensorMapIm2col GetTensorMapIm2col(Reader& r) {
  TensorMapIm2col t;
  t.data_type = r.Get<uint32_t>();
  t.rank = r.Get<uint32_t>();
  t.address = r.Get<uint64_t>();
  internal::GetArray(r, t.dims);
  internal::GetArray(r, t.strides);
  internal::GetArray(r, t.lower);
  internal::GetArray(r, t.upper);
  t.channels_per_pixel = r.Get<uint32_t>();
  t.pixels_per_column = r.Get<uint32_t>();
  internal::GetArray(r, t.element_strides);
  t.interleave = r.Get<uint32_t>();
  t.swizzle = r.Get<uint32_t>();
  t.l2_promotion = r.Get<uint32_t>();
  t.oob_fill = r.Get<uint32_t>();
  return t;
}

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_WIRE_MEMORY_EXT_H_
