#!/bin/sh
# Checks that the built libnvidia-ml.so.1 is self-contained like libwooly:
#  - it exports only nvml* symbols (nm -D --defined-only),
#  - its SONAME is libnvidia-ml.so.1,
#  - it needs nothing beyond glibc,
#  - the entry points pynvml, vLLM's platform detection and PyTorch look up
#    are exported.
# Usage: nvml_selfcontained.sh <libnvidia-ml.so.1>
set -eu
lib=$1
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

[ -f "$lib" ] || { echo "FAIL: $lib does not exist" >&2; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || err "no exported symbols"
stray=$(printf '%s\n' "$exported" | grep -v '^nvml' || true)
[ -z "$stray" ] || err "exports symbols other than nvml*: $(printf '%s ' $stray)"

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libnvidia-ml.so.1" ] || err "SONAME is '$soname', want libnvidia-ml.so.1"

needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for n in $needed; do
  case "$n" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
    *) err "depends on $n (only glibc libraries are allowed)" ;;
  esac
done

missing=""
for sym in nvmlInit nvmlInit_v2 nvmlInitWithFlags nvmlShutdown nvmlErrorString \
    nvmlSystemGetDriverVersion nvmlSystemGetNVMLVersion nvmlSystemGetCudaDriverVersion \
    nvmlSystemGetCudaDriverVersion_v2 nvmlSystemGetProcessName \
    nvmlDeviceGetCount nvmlDeviceGetCount_v2 nvmlDeviceGetHandleByIndex \
    nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetHandleByUUID nvmlDeviceGetHandleByPciBusId \
    nvmlDeviceGetHandleByPciBusId_v2 nvmlDeviceGetName nvmlDeviceGetUUID nvmlDeviceGetIndex \
    nvmlDeviceGetMinorNumber nvmlDeviceGetPciInfo nvmlDeviceGetPciInfo_v2 nvmlDeviceGetPciInfo_v3 \
    nvmlDeviceGetCudaComputeCapability nvmlDeviceGetMemoryInfo nvmlDeviceGetMemoryInfo_v2 \
    nvmlDeviceGetUtilizationRates nvmlDeviceGetComputeRunningProcesses \
    nvmlDeviceGetComputeRunningProcesses_v2 nvmlDeviceGetComputeRunningProcesses_v3 \
    nvmlDeviceGetGraphicsRunningProcesses nvmlDeviceGetGraphicsRunningProcesses_v2 \
    nvmlDeviceGetGraphicsRunningProcesses_v3 nvmlDeviceGetMPSComputeRunningProcesses_v3 \
    nvmlDeviceGetBrand nvmlDeviceGetArchitecture nvmlDeviceGetMigMode \
    nvmlDeviceGetPersistenceMode nvmlDeviceGetComputeMode nvmlDeviceGetP2PStatus \
    nvmlDeviceGetNvLinkState nvmlDeviceGetTopologyCommonAncestor nvmlDeviceGetCpuAffinity \
    nvmlDeviceGetNvLinkRemoteDeviceType nvmlDeviceGetNvLinkRemotePciInfo_v2 \
    nvmlDeviceGetGpuFabricInfoV nvmlDeviceGetTemperature nvmlDeviceGetPowerUsage \
    nvmlDeviceGetClockInfo nvmlInternalGetExportTable; do
  printf '%s\n' "$exported" | grep -qx "$sym" || missing="$missing $sym"
done
[ -z "$missing" ] || err "entry points not exported:$missing"

# The oldest glibc supported is 2.35 (Ubuntu 22.04, the base of the PyTorch
# and vLLM images); client/glibc_compat.cc keeps newer symbols out.
glibc=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
if [ -n "$glibc" ] && [ "$(printf '%s\n2.35\n' "$glibc" | sort -V | tail -1)" != "2.35" ]; then
  err "needs glibc $glibc ($(objdump -T "$lib" | grep "GLIBC_$glibc" | awk '{ print $NF }' | tr '\n' ' ')); the floor is 2.35"
fi

if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: $(printf '%s\n' "$exported" | wc -l) nvml* symbols exported, SONAME $soname, NEEDED: $(echo $needed)"
