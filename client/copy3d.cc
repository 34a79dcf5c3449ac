#include "copy3d.h"

#include <algorithm>
#include <cstring>

namespace wooly::client {
namespace {

// Address of row (y, z) of a host side, relative to the copy origin.
uint8_t* HostRow(const CopySide& s, uint64_t y, uint64_t z) {
  return s.host + (s.z + z) * s.height * s.pitch + (s.y + y) * s.pitch + s.x_bytes;
}

CopySpec Piece(const CopySpec& c, uint64_t x0, uint64_t w, uint64_t y0, uint64_t h, uint64_t z0,
               uint64_t d) {
  CopySpec p = c;
  p.src.x_bytes += x0;
  p.dst.x_bytes += x0;
  p.src.y += y0;
  p.dst.y += y0;
  p.src.z += z0;
  p.dst.z += z0;
  p.width_bytes = w;
  p.height = h;
  p.depth = d;
  return p;
}

void PutSide(const CopySide& s, const CopySpec& c, uint8_t* kind, uint64_t* ptr, uint64_t* x,
             uint64_t* y, uint64_t* z, uint64_t* pitch, uint64_t* height) {
  if (s.is_host) {
    *kind = static_cast<uint8_t>(wire::MemKind::kHost);
    *ptr = 0;
    *x = *y = *z = 0;
    *pitch = c.width_bytes;
    *height = c.height;
  } else {
    *kind = static_cast<uint8_t>(wire::MemKind::kDevice);
    *ptr = s.device;
    *x = s.x_bytes;
    *y = s.y;
    *z = s.z;
    *pitch = s.pitch;
    *height = s.height;
  }
}

}  // namespace

uint64_t HostBytes(const CopySpec& c) {
  if (!c.src.is_host && !c.dst.is_host) return 0;
  return c.width_bytes * c.height * c.depth;
}

std::vector<CopySpec> SplitCopy(const CopySpec& c, uint64_t max_bytes) {
  std::vector<CopySpec> out;
  const uint64_t w = c.width_bytes, h = c.height, d = c.depth;
  if (w == 0 || h == 0 || d == 0) return out;
  if (max_bytes == 0 || (!c.src.is_host && !c.dst.is_host) || w * h * d <= max_bytes) {
    out.push_back(c);
    return out;
  }
  if (w * h <= max_bytes) {
    const uint64_t dz = max_bytes / (w * h);
    for (uint64_t z = 0; z < d; z += dz)
      out.push_back(Piece(c, 0, w, 0, h, z, std::min(dz, d - z)));
    return out;
  }
  if (w <= max_bytes) {
    const uint64_t dy = max_bytes / w;
    for (uint64_t z = 0; z < d; ++z) {
      for (uint64_t y = 0; y < h; y += dy)
        out.push_back(Piece(c, 0, w, y, std::min(dy, h - y), z, 1));
    }
    return out;
  }
  for (uint64_t z = 0; z < d; ++z) {
    for (uint64_t y = 0; y < h; ++y) {
      for (uint64_t x = 0; x < w; x += max_bytes) {
        out.push_back(Piece(c, x, std::min(max_bytes, w - x), y, 1, z, 1));
      }
    }
  }
  return out;
}

wire::Copy3D ToWire(const CopySpec& c) {
  wire::Copy3D w;
  std::memset(&w, 0, sizeof(w));  // padding bytes travel too; keep them defined
  PutSide(c.src, c, &w.src_kind, &w.src_ptr, &w.src_x_bytes, &w.src_y, &w.src_z, &w.src_pitch,
          &w.src_height);
  PutSide(c.dst, c, &w.dst_kind, &w.dst_ptr, &w.dst_x_bytes, &w.dst_y, &w.dst_z, &w.dst_pitch,
          &w.dst_height);
  w.width_bytes = c.width_bytes;
  w.height = c.height;
  w.depth = c.depth;
  return w;
}

void PackHostRows(const CopySpec& c, uint8_t* out) {
  for (uint64_t z = 0; z < c.depth; ++z) {
    for (uint64_t y = 0; y < c.height; ++y) {
      std::memcpy(out, HostRow(c.src, y, z), c.width_bytes);
      out += c.width_bytes;
    }
  }
}

void UnpackHostRows(const CopySpec& c, const uint8_t* in) {
  for (uint64_t z = 0; z < c.depth; ++z) {
    for (uint64_t y = 0; y < c.height; ++y) {
      std::memcpy(HostRow(c.dst, y, z), in, c.width_bytes);
      in += c.width_bytes;
    }
  }
}

void CopyHostToHost(const CopySpec& c) {
  for (uint64_t z = 0; z < c.depth; ++z) {
    for (uint64_t y = 0; y < c.height; ++y) {
      std::memmove(HostRow(c.dst, y, z), HostRow(c.src, y, z), c.width_bytes);
    }
  }
}

}  // namespace wooly::client
