// Finding the extent of a module image from its first byte.
//
// cuModuleLoadData, cuModuleLoadDataEx, cuModuleLoadFatBinary and
// cuLibraryLoadData take a pointer without a size, and the image has to be
// copied to woolyd, so its size must be read from the image itself.
#ifndef WOOLY_CLIENT_IMAGE_SIZE_H_
#define WOOLY_CLIENT_IMAGE_SIZE_H_

#include <cstddef>
#include <cstdint>

namespace wooly::client {

enum class ImageKind {
  kElf,            // a cubin
  kFatbin,         // fatbin header 0xBA55ED50
  kFatbinWrapper,  // the __fatBinC_Wrapper_t nvcc emits (magic 0x466243b1)
  kText,           // NUL-terminated PTX or the fake backend's module text
};

// Magic numbers of the binary formats.
inline constexpr uint32_t kFatbinMagic = 0xBA55ED50u;
inline constexpr uint32_t kFatbinWrapperMagic = 0x466243b1u;

// The bytes to send for a module image.
struct ImageSpan {
  const uint8_t* data = nullptr;  // for a wrapper: the fatbin it points at
  size_t size = 0;
  ImageKind kind = ImageKind::kText;
};

// Determines where `image` ends:
//   ELF: the largest of the section header table end, the program header
//        table end and every section's / segment's file extent;
//   fatbin: header_size + fat_size from its header;
//   fatbin wrapper: follows its `data` pointer to the fatbin;
//   otherwise: NUL-terminated text, strlen + 1.
// Returns false for a null pointer or a malformed binary header (e.g. an ELF
// whose tables overflow), which callers report as CUDA_ERROR_INVALID_IMAGE.
// The image must be readable up to the returned size; like the real driver
// this cannot be checked beforehand.
bool DetermineImage(const void* image, ImageSpan* out);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_IMAGE_SIZE_H_
