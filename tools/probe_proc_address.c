// Dumps what the real driver's cuGetProcAddress_v2 returns for each query line
// "name version flags" of argv[1]; used to record tests/data/proc_address_real.tsv.
// Build: gcc -O1 -o probe tools/probe_proc_address.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
typedef int (*gpa2_t)(const char*, void**, int, uint64_t, int*);
int main(int argc, char** argv) {
  void* h = dlopen(argc > 2 ? argv[2] : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
  gpa2_t gpa = (gpa2_t)dlsym(h, "cuGetProcAddress_v2");
  int (*init)(unsigned) = (int(*)(unsigned))dlsym(h, "cuInit");
  printf("# cuInit=%d\n", init(0));
  FILE* q = fopen(argv[1], "r"); char name[256]; int ver; unsigned long fl;
  while (fscanf(q, "%255s %d %lu", name, &ver, &fl) == 3) {
    void* p = 0; int st = -1; int r = gpa(name, &p, ver, fl, &st);
    const char* sym = "-"; Dl_info di;
    char buf[300]; if (r == 0 && p && dladdr(p, &di) && di.dli_sname) { if (di.dli_saddr == p) sym = di.dli_sname; else { snprintf(buf, sizeof buf, "INTERNAL(near %s)", di.dli_sname); sym = buf; } }
    printf("%s\t%d\t%lu\t%d\t%d\t%s\n", name, ver, fl, r, st, r == 0 ? sym : "NOTFOUND");
  }
  return 0;
}
