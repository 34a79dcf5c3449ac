// wooly-smi's data source: the NVML library the dynamic loader finds by
// name (libnvidia-ml.so.1; under Wooly, Wooly's NVML view on
// LD_LIBRARY_PATH), loaded with dlopen and asked through the public NVML API
// only. Not thread-safe; one instance per process.
#ifndef WOOLY_SMI_NVML_SOURCE_H_
#define WOOLY_SMI_NVML_SOURCE_H_

#include <string>

#include "smi_format.h"

namespace wooly::smi {

class NvmlSource {
 public:
  NvmlSource() = default;
  ~NvmlSource();  // nvmlShutdown, dlclose
  NvmlSource(const NvmlSource&) = delete;
  NvmlSource& operator=(const NvmlSource&) = delete;

  // dlopen's the library; false with *error when it is not found or lacks
  // the entry points wooly-smi needs.
  bool Load(std::string* error);
  // The file the loader picked (for messages), once loaded.
  const std::string& path() const { return path_; }
  // Whether the loaded library is Wooly's NVML view: its file carries the
  // name of Wooly's marker variable (NVIDIA's does not).
  bool IsWooly() const;
  // nvmlInit_v2 and one read of everything wooly-smi shows; false with
  // *error when NVML does not initialize.
  bool Read(Snapshot* out, std::string* error);

 private:
  void* handle_ = nullptr;
  bool initialized_ = false;
  std::string path_;
};

// Whether the file at path contains needle (the Wooly library test).
bool FileContains(const std::string& path, const std::string& needle);

}  // namespace wooly::smi

#endif  // WOOLY_SMI_NVML_SOURCE_H_
