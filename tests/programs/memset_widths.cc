// memset_widths: cuMemsetD8/D16/D32 and cuMemsetD2D8/D2D16/D2D32, synchronous
// and async, checked byte for byte against a host model of the buffer
// (including the bytes that must stay untouched around each range).
#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr size_t kBytes = 8192;
constexpr uint8_t kBackground = 0x11;

// The host model: writes `width` elements of `elem` bytes per row.
void ModelSet(std::vector<uint8_t>& m, size_t off, size_t pitch, uint32_t value, int elem,
              size_t width, size_t height) {
  for (size_t y = 0; y < height; ++y) {
    for (size_t x = 0; x < width; ++x) {
      std::memcpy(m.data() + off + y * pitch + x * elem, &value, elem);  // little-endian
    }
  }
}

void Compare(CUdeviceptr buf, const std::vector<uint8_t>& model, const std::string& what) {
  std::vector<uint8_t> got(kBytes);
  CHECK_CU(cuMemcpyDtoH(got.data(), buf, kBytes));
  for (size_t i = 0; i < kBytes; ++i) {
    if (got[i] != model[i]) {
      Fail(what + ": byte " + std::to_string(i) + " is " + std::to_string(got[i]) + ", want " +
           std::to_string(model[i]));
    }
  }
  std::printf("%s ok\n", what.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "memset_widths");
  DeviceBuffer buf(kBytes);
  CUstream stream;
  CHECK_CU(cuStreamCreate(&stream, CU_STREAM_DEFAULT));
  std::vector<uint8_t> model(kBytes);

  for (bool async : {false, true}) {
    const char* mode = async ? "async" : "sync";
    auto reset = [&] {
      CHECK_CU(cuMemsetD8(buf.get(), kBackground, kBytes));
      std::fill(model.begin(), model.end(), kBackground);
    };
    auto done = [&] {
      if (async) CHECK_CU(cuStreamSynchronize(stream));
    };
    const CUdeviceptr b = buf.get();

    // 1D, at offsets aligned only to the element size.
    reset();
    if (async)
      CHECK_CU(cuMemsetD8Async(b + 1, 0xAB, 1001, stream));
    else
      CHECK_CU(cuMemsetD8(b + 1, 0xAB, 1001));
    done();
    ModelSet(model, 1, 0, 0xAB, 1, 1001, 1);
    Compare(b, model, std::string("cuMemsetD8 ") + mode);

    reset();
    if (async)
      CHECK_CU(cuMemsetD16Async(b + 2, 0xBEEF, 501, stream));
    else
      CHECK_CU(cuMemsetD16(b + 2, 0xBEEF, 501));
    done();
    ModelSet(model, 2, 0, 0xBEEF, 2, 501, 1);
    Compare(b, model, std::string("cuMemsetD16 ") + mode);

    reset();
    if (async)
      CHECK_CU(cuMemsetD32Async(b + 4, 0xDEADBEEF, 251, stream));
    else
      CHECK_CU(cuMemsetD32(b + 4, 0xDEADBEEF, 251));
    done();
    ModelSet(model, 4, 0, 0xDEADBEEF, 4, 251, 1);
    Compare(b, model, std::string("cuMemsetD32 ") + mode);

    // 2D: rows narrower than the pitch, so the gaps must survive.
    reset();
    if (async)
      CHECK_CU(cuMemsetD2D8Async(b + 65, 96, 0x5A, 37, 7, stream));
    else
      CHECK_CU(cuMemsetD2D8(b + 65, 96, 0x5A, 37, 7));
    done();
    ModelSet(model, 65, 96, 0x5A, 1, 37, 7);
    Compare(b, model, std::string("cuMemsetD2D8 ") + mode);

    reset();
    if (async)
      CHECK_CU(cuMemsetD2D16Async(b + 130, 128, 0x1234, 30, 9, stream));
    else
      CHECK_CU(cuMemsetD2D16(b + 130, 128, 0x1234, 30, 9));
    done();
    ModelSet(model, 130, 128, 0x1234, 2, 30, 9);
    Compare(b, model, std::string("cuMemsetD2D16 ") + mode);

    reset();
    if (async)
      CHECK_CU(cuMemsetD2D32Async(b + 256, 160, 0xCAFEF00D, 33, 11, stream));
    else
      CHECK_CU(cuMemsetD2D32(b + 256, 160, 0xCAFEF00D, 33, 11));
    done();
    ModelSet(model, 256, 160, 0xCAFEF00D, 4, 33, 11);
    Compare(b, model, std::string("cuMemsetD2D32 ") + mode);
  }

  // A large D32 set crosses any chunking the implementation does.
  const size_t big = (24u << 20) + 12;
  DeviceBuffer large(big);
  CHECK_CU(cuMemsetD32(large.get(), 0x01020304, big / 4));
  std::vector<uint32_t> back(big / 4);
  CHECK_CU(cuMemcpyDtoH(back.data(), large.get(), big));
  for (size_t i = 0; i < back.size(); ++i) {
    CHECK_TRUE(back[i] == 0x01020304u, "large cuMemsetD32 element " + std::to_string(i));
  }
  std::printf("cuMemsetD32 %zu bytes ok\n", big);

  CHECK_CU(cuStreamDestroy(stream));
  Pass();
  return 0;
}
