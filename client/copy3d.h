// 2D/3D copies in terms of the wire's Copy3D: describing each side,
// splitting a copy so that no request or reply carries more than a chunk of
// host data, and packing/unpacking host rows.
#ifndef WOOLY_CLIENT_COPY3D_H_
#define WOOLY_CLIENT_COPY3D_H_

#include <cstdint>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::client {

// One side of a copy. For a host side `host` points at the start of the
// whole host buffer (offsets and pitch still apply); for a device side
// `device` is the device base address.
struct CopySide {
  bool is_host = false;
  uint8_t* host = nullptr;
  uint64_t device = 0;
  uint64_t x_bytes = 0, y = 0, z = 0;
  uint64_t pitch = 0;   // bytes per row
  uint64_t height = 0;  // rows per slice
};

struct CopySpec {
  CopySide src, dst;
  uint64_t width_bytes = 0, height = 0, depth = 0;
};

// Host bytes one piece moves: width * height * depth (0 if no host side).
uint64_t HostBytes(const CopySpec& c);

// Splits `c` into pieces in row-major order, each moving at most
// `max_bytes` of host data (whole slices, then whole rows, then row
// segments). A copy without a host side is returned whole.
std::vector<CopySpec> SplitCopy(const CopySpec& c, uint64_t max_bytes);

// The wire form: device sides as given; host sides with ptr, offsets 0,
// pitch = width_bytes and height = the copy's height (the rows travel packed).
wire::Copy3D ToWire(const CopySpec& c);

// Gathers the source rows of `c` (a host source) into `out`, packed.
void PackHostRows(const CopySpec& c, uint8_t* out);
// Scatters packed rows into the host destination of `c`.
void UnpackHostRows(const CopySpec& c, const uint8_t* in);
// Host-to-host copy, row by row.
void CopyHostToHost(const CopySpec& c);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_COPY3D_H_
