// libcudart's private export tables (cuGetExportTable), served by libwooly.
//
// The CUDA runtime (and the copies of it inside cuBLAS, cuDNN, ...) asks the
// driver for several undocumented tables of function pointers and checks
// them against each other with a keyed hash. Wooly serves its own complete,
// consistent set; docs/export-tables.md describes each table as far as it is
// known. Tables are static: their addresses enter the integrity hash.
//
// Thread safety: all functions may be called from any thread.
#ifndef WOOLY_CLIENT_EXPORT_TABLES_H_
#define WOOLY_CLIENT_EXPORT_TABLES_H_

#include <cuda.h>

#include <cstdint>

namespace wooly::client {

struct Context;

// The table for `id`, or nullptr for a UUID Wooly does not know.
const void* FindExportTable(const CUuuid& id);

// Runs and forgets the context-local-storage destructors registered for
// `ctx` (on primary-context reset, last release, and cuCtxDestroy). Callbacks
// run without any Wooly lock held: they may call back into the driver.
void RunContextLocalDestructors(Context* ctx);

// The integrity check's answer (slot 1 of the integrity table), exposed for
// tests: the hash over the given inputs.
struct IntegrityInputs {
  uint32_t driver_version;
  uint32_t version;
  uint32_t pid;
  uint32_t thread;
  uint64_t cudart_table;
  uint64_t integrity_table;
  uint64_t check_function;
  uint64_t unix_seconds;
  struct Device {
    uint8_t uuid[16];
    int32_t pci_domain, pci_bus, pci_device;
  };
  const Device* devices;
  int device_count;
};
void ComputeIntegrity(const IntegrityInputs& in, uint64_t out[2]);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_EXPORT_TABLES_H_
