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
. "$(dirname "$0")/selfcontained_lib.sh"

[ -f "$lib" ] || { echo "FAIL: $lib does not exist" >&2; exit 1; }

check_exports_only "$lib" nvml

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libnvidia-ml.so.1" ] || err "SONAME is '$soname', want libnvidia-ml.so.1"

check_needs_only_glibc "$lib"

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

check_glibc_floor "$lib"

if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: $(printf '%s\n' "$exported" | wc -l) nvml* symbols exported, SONAME $soname, NEEDED: $(echo $needed)"
