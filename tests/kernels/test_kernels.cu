// Test kernels for the driver-API test programs (tests/programs/). Built by
// nvcc into test_kernels.fatbin and test_kernels.cubin; the CPU versions used
// with the fake backend are in tests/fake/fake_kernels.cc and must keep the
// same names, parameters and results. extern "C" keeps the names unmangled.

// The struct parameter of `affine`: 32 bytes with 4 bytes of padding after n.
struct Affine {
  float scale;
  float bias;
  int n;
  const float* in;
  float* out;
};

__device__ int g_counter;
__device__ float g_table[256];

extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

extern "C" __global__ void fill_u32(unsigned* p, unsigned v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

// Busy-waits about `spin_cycles` clock cycles, then fills: long enough that a
// missing stream/event dependency would let a consumer read stale data.
extern "C" __global__ void delayed_fill_u32(unsigned* p, unsigned v, int n,
                                            unsigned long long spin_cycles) {
  const long long start = clock64();
  while (static_cast<unsigned long long>(clock64() - start) < spin_cycles) {
  }
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

extern "C" __global__ void copy_u32(const unsigned* src, unsigned* dst, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = src[i];
}

extern "C" __global__ void affine(Affine a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < a.n) a.out[i] = a.in[i] * a.scale + a.bias;
}

// Launched with `extra` (a hand-packed parameter buffer) by launch_extra.
extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

extern "C" __global__ void add_global(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] += g_table[i % 256];
}

extern "C" __global__ void bump_counter() { atomicAdd(&g_counter, 1); }
