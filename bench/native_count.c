/* Counts a few driver calls of a process running on NVIDIA's own libcuda,
 * so that bench/ can compare them with what Wooly's client sees
 * ($WOOLY_CLIENT_STATS): load it with LD_PRELOAD on the GPU machine.
 *
 * libcudart, cuDNN and PyTorch find driver functions with dlsym() on their
 * own libcuda handle and through cuGetProcAddress, which an LD_PRELOAD
 * definition of the functions would not reach; so this wraps dlsym() and
 * hands out counting wrappers for the functions below. Prints one line per
 * counted function at exit. A diagnostic, not part of Wooly.
 *
 * With WOOLY_PROF=1 it also samples the process's CPU time (SIGPROF every
 * millisecond, a backtrace per sample) and prints at exit, per shared
 * object, the samples spent in it (self) and under it (total), and the
 * hottest functions. Works the same natively and through Wooly.
 *
 * With WOOLY_COUNT_TABLES=1 it also counts the calls through each slot of
 * the private export tables that libcudart and cuDNN ask for and whose
 * slots are not publicly described (docs/compatibility.md): it hands out a
 * copy of each such table whose slots are x86-64 stubs that count and jump
 * on to the real function, and prints the counts at exit. With
 * WOOLY_TRACE_TABLES=1 the stubs go through a C wrapper instead that also
 * prints, for the first WOOLY_TRACE_CALLS (6) calls of each slot, the caller,
 * the six argument registers and the first four stack words, the bytes they
 * point at before and after the call, the result and the time, and counts
 * per slot the calls that returned 0. Slots taking more than ten integer
 * arguments or floating-point ones would be called wrongly.
 *
 * With WOOLY_TRACE_ATTRS=1 it prints each device attribute the process asked
 * for (cuDeviceGetAttribute) and its answer; with WOOLY_TRACE_NVRTC=1 it
 * counts and times NVRTC compiles (found through dlsym, as cuDNN does). */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef void* (*dlsym_fn)(void*, const char*);
static dlsym_fn real_dlsym(void) {
  static dlsym_fn fn;
  if (fn == NULL) fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
  if (fn == NULL) fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  return fn;
}

enum {
  kLoad,
  kUnload,
  kGetKernel,
  kFuncGetAttr,
  kKernelGetAttr,
  kFuncSetAttr,
  kKernelSetAttr,
  kCtxGetLimit,
  kModuleLoadData,
  kCount
};
static const char* const kNames[kCount] = {
    "cuLibraryLoadData",    "cuLibraryUnload",      "cuLibraryGetKernel",
    "cuFuncGetAttribute",   "cuKernelGetAttribute", "cuFuncSetAttribute",
    "cuKernelSetAttribute", "cuCtxGetLimit",        "cuModuleLoadData"};
static void* real[kCount];
static atomic_ullong calls[kCount], ns[kCount];

static unsigned long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}
#define TIMED(i, call)                     \
  unsigned long long t0 = now_ns();        \
  CUresult r = call;                       \
  atomic_fetch_add(&ns[i], now_ns() - t0); \
  atomic_fetch_add(&calls[i], 1);          \
  return r

static CUresult w_load(CUlibrary* l, const void* c, CUjit_option* jo, void** jv, unsigned nj,
                       CUlibraryOption* lo, void** lv, unsigned nl) {
  TIMED(kLoad,
        ((CUresult(*)(CUlibrary*, const void*, CUjit_option*, void**, unsigned, CUlibraryOption*,
                      void**, unsigned))real[kLoad])(l, c, jo, jv, nj, lo, lv, nl));
}
static CUresult w_unload(CUlibrary l) {
  TIMED(kUnload, ((CUresult(*)(CUlibrary))real[kUnload])(l));
}
static CUresult w_getkernel(CUkernel* k, CUlibrary l, const char* n) {
  TIMED(kGetKernel, ((CUresult(*)(CUkernel*, CUlibrary, const char*))real[kGetKernel])(k, l, n));
}
static CUresult w_fga(int* p, CUfunction_attribute a, CUfunction f) {
  TIMED(kFuncGetAttr,
        ((CUresult(*)(int*, CUfunction_attribute, CUfunction))real[kFuncGetAttr])(p, a, f));
}
static CUresult w_kga(int* p, CUfunction_attribute a, CUkernel k, CUdevice d) {
  TIMED(kKernelGetAttr, ((CUresult(*)(int*, CUfunction_attribute, CUkernel,
                                      CUdevice))real[kKernelGetAttr])(p, a, k, d));
}
static CUresult w_fsa(CUfunction f, CUfunction_attribute a, int v) {
  TIMED(kFuncSetAttr,
        ((CUresult(*)(CUfunction, CUfunction_attribute, int))real[kFuncSetAttr])(f, a, v));
}
static CUresult w_ksa(CUfunction_attribute a, int v, CUkernel k, CUdevice d) {
  TIMED(kKernelSetAttr, ((CUresult(*)(CUfunction_attribute, int, CUkernel,
                                      CUdevice))real[kKernelSetAttr])(a, v, k, d));
}
static CUresult w_limit(size_t* v, CUlimit l) {
  TIMED(kCtxGetLimit, ((CUresult(*)(size_t*, CUlimit))real[kCtxGetLimit])(v, l));
}
static CUresult w_mload(CUmodule* m, const void* i) {
  TIMED(kModuleLoadData, ((CUresult(*)(CUmodule*, const void*))real[kModuleLoadData])(m, i));
}
static void* const kWrappers[kCount] = {(void*)w_load, (void*)w_unload, (void*)w_getkernel,
                                        (void*)w_fga,  (void*)w_kga,    (void*)w_fsa,
                                        (void*)w_ksa,  (void*)w_limit,  (void*)w_mload};

/* ---- export-table slot counting (WOOLY_COUNT_TABLES=1) */

/* Tables whose slots are counted: UUID bytes in memory order. */
static const unsigned char kCountedTables[][16] = {
    {0x69, 0xa2, 0x8e, 0x9f, 0x24, 0x49, 0x8b, 0x47, 0xb0, 0x30, 0xc5, 0xda, 0x33, 0x0e, 0xa4,
     0xe9},
    {0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48, 0x8c, 0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8,
     0xf2},
    {0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45, 0x87, 0x26, 0xc0, 0xf1, 0xe7, 0xdd, 0x8b,
     0xca},
    {0xda, 0x91, 0x51, 0xd3, 0x3a, 0xe6, 0xcc, 0x41, 0xa5, 0xc0, 0x4f, 0x26, 0xd5, 0x33, 0xe3,
     0x28},
    {0xf8, 0xcf, 0xf9, 0x51, 0x21, 0x46, 0x8b, 0x4e, 0xb9, 0xe2, 0xfb, 0x46, 0x9e, 0x7c, 0x0d,
     0xd9},
};
enum { kTables = sizeof(kCountedTables) / 16, kMaxSlots = 128, kStubBytes = 32 };
struct slot_info {
  int table, slot;
  void* target;
  unsigned long long* counter;
  unsigned long long zero_results; /* calls that returned 0 */
};
struct counted_table {
  const void* real;      /* the driver's table */
  void* copy[kMaxSlots]; /* what callers get */
  unsigned long long calls[kMaxSlots];
  struct slot_info info[kMaxSlots];
  int slots;
};
static struct counted_table tables[kTables];
static atomic_int tables_lock;
typedef CUresult (*get_export_table_fn)(const void**, const CUuuid*);
static get_export_table_fn real_get_export_table;

/* A stub that adds one to *counter and jumps to target, leaving every
 * argument register and the stack as they were. */
static void write_stub(unsigned char* at, unsigned long long* counter, void* target) {
  unsigned char* p = at;
  *p++ = 0x48, *p++ = 0xb8; /* movabs rax, counter */
  memcpy(p, &counter, 8), p += 8;
  *p++ = 0xf0, *p++ = 0x48, *p++ = 0xff, *p++ = 0x00; /* lock inc qword [rax] */
  *p++ = 0x48, *p++ = 0xb8;                           /* movabs rax, target */
  memcpy(p, &target, 8), p += 8;
  *p++ = 0xff, *p++ = 0xe0; /* jmp rax */
}

/* Tracing: a slot's stub loads its slot_info into r11 and jumps to
 * trace_entry, which passes it, the caller's return address and the first
 * four stack arguments to trace_call as the 7th to 12th arguments; the real
 * slot is called with ten (extra ones are harmless in the SysV ABI). */
typedef unsigned long long u64;
__attribute__((visibility("hidden"), used)) u64 wooly_nc_trace_call(u64 a, u64 b, u64 c, u64 d,
                                                                    u64 e, u64 f,
                                                                    struct slot_info* info,
                                                                    void* caller, u64 s7, u64 s8,
                                                                    u64 s9, u64 s10);
__asm__(
    ".text\n"
    ".globl wooly_nc_trace_entry\n"
    ".hidden wooly_nc_trace_entry\n"
    "wooly_nc_trace_entry:\n"
    "  mov (%rsp), %rax\n"
    "  sub $56, %rsp\n" /* 16-byte aligned again */
    "  mov %r11, 0(%rsp)\n"
    "  mov %rax, 8(%rsp)\n"
    "  mov 64(%rsp), %rax\n"
    "  mov %rax, 16(%rsp)\n"
    "  mov 72(%rsp), %rax\n"
    "  mov %rax, 24(%rsp)\n"
    "  mov 80(%rsp), %rax\n"
    "  mov %rax, 32(%rsp)\n"
    "  mov 88(%rsp), %rax\n"
    "  mov %rax, 40(%rsp)\n"
    "  call wooly_nc_trace_call\n"
    "  add $56, %rsp\n"
    "  ret\n");
void wooly_nc_trace_entry(void);
static int trace_tables;
enum { kDumpBytes = 48, kArgs = 10 };
static unsigned long long traced_calls = 6; /* per slot; WOOLY_TRACE_CALLS */

/* Reads len bytes at addr into out without faulting; 0 when unreadable. */
static int peek(u64 addr, unsigned char* out, size_t len) {
  if (addr < 0x10000) return 0;
  struct iovec local = {out, len}, remote = {(void*)addr, len};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len;
}
static void dump(FILE* f, const char* when, int arg, const unsigned char* b) {
  fprintf(f, "trace:    arg%d %s:", arg, when);
  for (int i = 0; i < kDumpBytes; ++i) fprintf(f, "%s%02x", i % 8 == 0 ? " " : "", b[i]);
  fprintf(f, "\n");
}

u64 wooly_nc_trace_call(u64 a, u64 b, u64 c, u64 d, u64 e, u64 f, struct slot_info* info,
                        void* caller, u64 s7, u64 s8, u64 s9, u64 s10) {
  u64 n = __atomic_add_fetch(info->counter, 1, __ATOMIC_RELAXED);
  typedef u64 (*fn10)(u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);
  fn10 target = (fn10)info->target;
  if (n > traced_calls) {
    u64 r = target(a, b, c, d, e, f, s7, s8, s9, s10);
    if ((r & 0xffffffffull) == 0) __atomic_add_fetch(&info->zero_results, 1, __ATOMIC_RELAXED);
    return r;
  }
  u64 args[kArgs] = {a, b, c, d, e, f, s7, s8, s9, s10};
  unsigned char before[kArgs][kDumpBytes], after[kDumpBytes];
  int readable[kArgs];
  for (int i = 0; i < kArgs; ++i) readable[i] = peek(args[i], before[i], kDumpBytes);
  unsigned long long t0 = now_ns();
  u64 r = target(a, b, c, d, e, f, s7, s8, s9, s10);
  unsigned long long took = now_ns() - t0;
  if ((r & 0xffffffffull) == 0) __atomic_add_fetch(&info->zero_results, 1, __ATOMIC_RELAXED);
  Dl_info dl;
  const char* obj = "?";
  u64 off = 0;
  if (dladdr(caller, &dl) != 0 && dl.dli_fname != NULL) {
    obj = strrchr(dl.dli_fname, '/') ? strrchr(dl.dli_fname, '/') + 1 : dl.dli_fname;
    off = (u64)caller - (u64)dl.dli_fbase;
  }
  flockfile(stderr);
  fprintf(stderr,
          "trace: pid %d table %02x%02x%02x%02x slot %d call %llu from %s+0x%llx tid %ld "
          "args %llx %llx %llx %llx %llx %llx stack %llx %llx %llx %llx -> %llu (0x%llx) "
          "%.3f ms\n",
          (int)getpid(), kCountedTables[info->table][0], kCountedTables[info->table][1],
          kCountedTables[info->table][2], kCountedTables[info->table][3], info->slot, n, obj, off,
          (long)gettid(), a, b, c, d, e, f, s7, s8, s9, s10, r & 0xffffffffull, r, took / 1e6);
  for (int i = 0; i < kArgs; ++i) {
    if (!readable[i]) continue;
    dump(stderr, "before", i, before[i]);
    if (peek(args[i], after, kDumpBytes) && memcmp(after, before[i], kDumpBytes) != 0) {
      dump(stderr, "after ", i, after);
      /* What a pointer written there points at (an out-parameter). */
      u64 first;
      unsigned char deref[kDumpBytes];
      memcpy(&first, after, 8);
      if (memcmp(after, before[i], 8) != 0 && peek(first, deref, kDumpBytes))
        dump(stderr, "*after", i, deref);
    }
  }
  funlockfile(stderr);
  return r;
}

static void write_trace_stub(unsigned char* at, struct slot_info* info) {
  unsigned char* p = at;
  void* entry = (void*)wooly_nc_trace_entry;
  *p++ = 0x49, *p++ = 0xbb; /* movabs r11, info */
  memcpy(p, &info, 8), p += 8;
  *p++ = 0x48, *p++ = 0xb8; /* movabs rax, entry */
  memcpy(p, &entry, 8), p += 8;
  *p++ = 0xff, *p++ = 0xe0; /* jmp rax */
}

/* Builds the counting copy of table t (real: the driver's); NULL when it
 * cannot, and then the caller gets the real table. */
static const void* counting_copy(struct counted_table* t, int table, const void* real) {
  const unsigned long long* words = real;
  int slots = (int)(words[0] / 8);
  if (words[0] % 8 != 0 || slots < 2 || slots > kMaxSlots) return NULL;
  unsigned char* code = mmap(NULL, (size_t)slots * kStubBytes, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) return NULL;
  t->copy[0] = (void*)words[0];
  for (int i = 1; i < slots; ++i) {
    void* target = (void*)words[i];
    if (target == NULL) {
      t->copy[i] = NULL;
      continue;
    }
    t->info[i] = (struct slot_info){table, i, target, &t->calls[i], 0};
    if (trace_tables)
      write_trace_stub(code + i * kStubBytes, &t->info[i]);
    else
      write_stub(code + i * kStubBytes, &t->calls[i], target);
    t->copy[i] = code + i * kStubBytes;
  }
  if (mprotect(code, (size_t)slots * kStubBytes, PROT_READ | PROT_EXEC) != 0) return NULL;
  t->slots = slots;
  t->real = real;
  return t->copy;
}

static CUresult w_get_export_table(const void** table, const CUuuid* id) {
  CUresult r = real_get_export_table(table, id);
  if (r != CUDA_SUCCESS || table == NULL || *table == NULL || id == NULL) return r;
  for (int k = 0; k < kTables; ++k) {
    if (memcmp(id->bytes, kCountedTables[k], 16) != 0) continue;
    int expected = 0;
    while (!atomic_compare_exchange_weak(&tables_lock, &expected, 1)) expected = 0;
    if (tables[k].real == NULL) counting_copy(&tables[k], k, *table);
    if (tables[k].real == *table) *table = tables[k].copy;
    atomic_store(&tables_lock, 0);
  }
  return r;
}

static void report_tables(void) {
  for (int k = 0; k < kTables; ++k) {
    if (tables[k].real == NULL) continue;
    fprintf(stderr, "native count: pid %d table %02x%02x%02x%02x:", (int)getpid(),
            kCountedTables[k][0], kCountedTables[k][1], kCountedTables[k][2], kCountedTables[k][3]);
    for (int i = 1; i < tables[k].slots; ++i) {
      if (tables[k].calls[i] == 0) continue;
      fprintf(stderr, " slot %d x%llu", i, tables[k].calls[i]);
      if (trace_tables) fprintf(stderr, " (%llu returned 0)", tables[k].info[i].zero_results);
    }
    fprintf(stderr, "\n");
  }
}

/* ---- device attributes (WOOLY_TRACE_ATTRS=1) */

enum { kAttrs = 512 };
static atomic_ullong attr_calls[kAttrs];
static int attr_value[kAttrs];
static atomic_int attr_changed[kAttrs];
static CUresult (*real_attr)(int*, CUdevice_attribute, CUdevice);
static CUresult w_attr(int* v, CUdevice_attribute a, CUdevice d) {
  CUresult r = real_attr(v, a, d);
  if (r == CUDA_SUCCESS && v != NULL && d == 0 && (unsigned)a < kAttrs) {
    if (atomic_fetch_add(&attr_calls[a], 1) == 0)
      attr_value[a] = *v;
    else if (attr_value[a] != *v)
      atomic_store(&attr_changed[a], 1);
  }
  return r;
}
static void report_attrs(void) {
  for (int a = 0; a < kAttrs; ++a) {
    unsigned long long n = atomic_load(&attr_calls[a]);
    if (n == 0) continue;
    fprintf(stderr, "attr: pid %d attr %d = %d (%llu calls%s)\n", (int)getpid(), a, attr_value[a],
            n, atomic_load(&attr_changed[a]) ? ", answer changed" : "");
  }
}

/* ---- NVRTC compiles (WOOLY_TRACE_NVRTC=1) */

typedef int (*nvrtc_compile_fn)(void*, int, const char* const*);
static nvrtc_compile_fn real_nvrtc_compile;
static atomic_int n_compiles;
static atomic_ullong compile_ns;

static int w_nvrtc_compile(void* prog, int n, const char* const* opts) {
  unsigned long long t0 = now_ns();
  int r = real_nvrtc_compile(prog, n, opts);
  atomic_fetch_add(&compile_ns, now_ns() - t0);
  atomic_fetch_add(&n_compiles, 1);
  return r;
}
static void report_nvrtc(void) {
  int n = atomic_load(&n_compiles);
  if (n == 0) return;
  fprintf(stderr, "nvrtc: pid %d %d compiles, %.1f ms\n", (int)getpid(), n,
          atomic_load(&compile_ns) / 1e6);
}

/* The wrapper for `name` (fn is the real function), or fn itself. */
static void* wrap(const char* name, void* fn) {
  if (fn == NULL) return fn;
  if (strcmp(name, "cuGetExportTable") == 0) {
    const char* on = getenv("WOOLY_COUNT_TABLES");
    const char* trace = getenv("WOOLY_TRACE_TABLES");
    trace_tables = trace != NULL && strcmp(trace, "1") == 0;
    const char* n = getenv("WOOLY_TRACE_CALLS");
    if (n != NULL) traced_calls = strtoull(n, NULL, 10);
    if (!trace_tables && (on == NULL || strcmp(on, "1") != 0)) return fn;
    real_get_export_table = (get_export_table_fn)fn;
    return (void*)w_get_export_table;
  }
  const char* on = getenv("WOOLY_TRACE_ATTRS");
  if (strcmp(name, "cuDeviceGetAttribute") == 0 && on != NULL && strcmp(on, "1") == 0) {
    real_attr = (CUresult(*)(int*, CUdevice_attribute, CUdevice))fn;
    return (void*)w_attr;
  }
  on = getenv("WOOLY_TRACE_NVRTC");
  if (on != NULL && strcmp(on, "1") == 0 && strcmp(name, "nvrtcCompileProgram") == 0) {
    real_nvrtc_compile = (nvrtc_compile_fn)fn;
    return (void*)w_nvrtc_compile;
  }
  for (int i = 0; i < kCount; ++i) {
    if (strcmp(name, kNames[i]) == 0) {
      real[i] = fn;
      return kWrappers[i];
    }
  }
  return fn;
}

typedef CUresult (*gpa2_fn)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
typedef CUresult (*gpa1_fn)(const char*, void**, int, cuuint64_t);
static gpa2_fn real_gpa2;
static gpa1_fn real_gpa1;
static CUresult w_gpa2(const char* s, void** p, int v, cuuint64_t f,
                       CUdriverProcAddressQueryResult* st) {
  CUresult r = real_gpa2(s, p, v, f, st);
  if (r == CUDA_SUCCESS && p != NULL) *p = wrap(s, *p);
  return r;
}
static CUresult w_gpa1(const char* s, void** p, int v, cuuint64_t f) {
  CUresult r = real_gpa1(s, p, v, f);
  if (r == CUDA_SUCCESS && p != NULL) *p = wrap(s, *p);
  return r;
}

void* dlsym(void* handle, const char* name) {
  void* fn = real_dlsym()(handle, name);
  if (fn == NULL || (strncmp(name, "cu", 2) != 0 && strncmp(name, "nvrtc", 5) != 0)) return fn;
  if (strcmp(name, "cuGetProcAddress_v2") == 0) {
    real_gpa2 = (gpa2_fn)fn;
    return (void*)w_gpa2;
  }
  if (strcmp(name, "cuGetProcAddress") == 0) {
    real_gpa1 = (gpa1_fn)fn;
    return (void*)w_gpa1;
  }
  return wrap(name, fn);
}

enum { kMaxSamples = 200000, kDepth = 24 };
static void* (*samples)[kDepth];
static unsigned char* depths;
static atomic_int n_samples;

static void on_prof(int sig) {
  (void)sig;
  int i = atomic_fetch_add(&n_samples, 1);
  if (i >= kMaxSamples) return;
  depths[i] = (unsigned char)backtrace(samples[i], kDepth);
}

__attribute__((constructor)) static void start_profile(void) {
  const char* on = getenv("WOOLY_PROF");
  if (on == NULL || strcmp(on, "1") != 0) return;
  samples = calloc(kMaxSamples, sizeof(*samples));
  depths = calloc(kMaxSamples, 1);
  if (samples == NULL || depths == NULL) return;
  void* warm[4];
  backtrace(warm, 4); /* loads the unwinder outside the handler */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_prof;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGPROF, &sa, NULL);
  struct itimerval it = {{0, 1000}, {0, 1000}};
  setitimer(ITIMER_PROF, &it, NULL);
}

struct tally {
  const char* name;
  long self, total;
};
static int tally_add(struct tally* t, int n, int cap, const char* name, int self, int total) {
  for (int i = 0; i < n; ++i) {
    if (strcmp(t[i].name, name) == 0) {
      t[i].self += self;
      t[i].total += total;
      return n;
    }
  }
  if (n == cap) return n;
  t[n].name = name;
  t[n].self = self;
  t[n].total = total;
  return n + 1;
}
static int by_self(const void* a, const void* b) {
  long d = ((const struct tally*)b)->self - ((const struct tally*)a)->self;
  return d > 0 ? 1 : d < 0 ? -1 : 0;
}

static void report_profile(void) {
  if (samples == NULL) return;
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &off, NULL);
  signal(SIGPROF, SIG_IGN);
  int n = atomic_load(&n_samples);
  if (n > kMaxSamples) n = kMaxSamples;
  enum { kCap = 512 };
  static struct tally objs[kCap], funcs[kCap];
  int n_objs = 0, n_funcs = 0;
  for (int i = 0; i < n; ++i) {
    const char* seen[kDepth];
    int n_seen = 0;
    /* Frame 0 is the handler, 1 the signal trampoline: the leaf is 2. */
    for (int f = 2; f < depths[i]; ++f) {
      Dl_info info;
      const char* obj = "?";
      const char* fn = "?";
      if (dladdr(samples[i][f], &info) != 0) {
        if (info.dli_fname != NULL)
          obj = strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname;
        if (info.dli_sname != NULL) fn = info.dli_sname;
      }
      int dup = 0;
      for (int k = 0; k < n_seen; ++k) dup |= strcmp(seen[k], obj) == 0;
      if (!dup && n_seen < kDepth) seen[n_seen++] = obj;
      if (!dup)
        n_objs = tally_add(objs, n_objs, kCap, obj, f == 2, 1);
      else if (f == 2)
        n_objs = tally_add(objs, n_objs, kCap, obj, 1, 0);
      if (f == 2) {
        char* label = malloc(strlen(obj) + strlen(fn) + 2);
        if (label == NULL) continue;
        sprintf(label, "%s:%s", obj, fn);
        n_funcs = tally_add(funcs, n_funcs, kCap, label, 1, 1);
      }
    }
  }
  qsort(objs, n_objs, sizeof(objs[0]), by_self);
  qsort(funcs, n_funcs, sizeof(funcs[0]), by_self);
  fprintf(stderr, "prof: pid %d %d samples of CPU time (1 ms timer, kernel tick granularity)\n",
          (int)getpid(), n);
  for (int i = 0; i < n_objs && i < 15; ++i) {
    fprintf(stderr, "prof: object %-40s self %6ld total %6ld\n", objs[i].name, objs[i].self,
            objs[i].total);
  }
  for (int i = 0; i < n_funcs && i < 20; ++i) {
    fprintf(stderr, "prof: leaf %-70.70s %6ld\n", funcs[i].name, funcs[i].self);
  }
}

__attribute__((destructor)) static void report(void) {
  report_tables();
  report_attrs();
  report_nvrtc();
  report_profile();
  for (int i = 0; i < kCount; ++i) {
    unsigned long long n = atomic_load(&calls[i]);
    if (n == 0) continue;
    fprintf(stderr, "native count: pid %d %s %llu calls %.3f ms\n", (int)getpid(), kNames[i], n,
            atomic_load(&ns[i]) / 1e6);
  }
}
