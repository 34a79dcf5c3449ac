// woolyd: the Wooly daemon on the node's real GPU (CUDA backend).
#include "wooly/server/cuda_backend.h"
#include "wooly/server/daemon.h"

int main(int argc, char** argv) {
  return wooly::server::RunDaemon(argc, argv, "woolyd", [](int device_ordinal) {
    return wooly::server::CreateCudaBackend(device_ordinal);
  });
}
