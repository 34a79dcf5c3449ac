// The fake kernels must mirror the nvcc-built ones: same names, same
// parameter layouts, same globals. Reads the sm_90 cubin's ELF directly
// (.nv.info.<kernel> EIATTR_KPARAM_INFO records and the symbol table), so it
// runs in CI without a GPU.
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/fake/fake_kernels.h"

namespace wooly::fake {
namespace {

using ::testing::UnorderedElementsAreArray;

constexpr uint8_t kFormatNone = 1, kFormatByte = 2, kFormatHalf = 3, kFormatSized = 4;
constexpr uint8_t kAttrParamInfo = 0x17;  // EIATTR_KPARAM_INFO

struct Cubin {
  std::map<std::string, std::vector<wire::ParamInfo>> kernels;  // by name
  std::map<std::string, uint64_t> objects;                      // global -> size
};

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Parses what the test needs from an ELF64 cubin; fails the test on
// anything malformed.
Cubin ParseCubin(const std::vector<uint8_t>& elf) {
  Cubin out;
  Elf64_Ehdr eh;
  EXPECT_GE(elf.size(), sizeof(eh));
  if (elf.size() < sizeof(eh)) return out;
  std::memcpy(&eh, elf.data(), sizeof(eh));
  EXPECT_EQ(std::memcmp(eh.e_ident, ELFMAG, SELFMAG), 0);
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  EXPECT_LE(eh.e_shoff + sh.size() * sizeof(Elf64_Shdr), elf.size());
  if (eh.e_shoff + sh.size() * sizeof(Elf64_Shdr) > elf.size()) return out;
  std::memcpy(sh.data(), elf.data() + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
  auto str = [&](const Elf64_Shdr& tab, uint32_t off) {
    return std::string(reinterpret_cast<const char*>(elf.data() + tab.sh_offset + off));
  };
  const Elf64_Shdr& names = sh[eh.e_shstrndx];
  for (const Elf64_Shdr& s : sh) {
    const std::string name = str(names, s.sh_name);
    const uint8_t* p = elf.data() + s.sh_offset;
    const uint8_t* end = p + s.sh_size;
    if (name.rfind(".nv.info.", 0) == 0) {
      std::vector<wire::ParamInfo>& params = out.kernels[name.substr(9)];
      while (p + 2 <= end) {
        const uint8_t format = p[0], attr = p[1];
        p += 2;
        if (format == kFormatSized) {
          uint16_t len;
          std::memcpy(&len, p, 2);
          p += 2;
          if (attr == kAttrParamInfo && len >= 12) {
            uint16_t ordinal, offset;
            uint32_t bits;
            std::memcpy(&ordinal, p + 4, 2);
            std::memcpy(&offset, p + 6, 2);
            std::memcpy(&bits, p + 8, 4);
            if (params.size() <= ordinal) params.resize(ordinal + 1u);
            params[ordinal] = wire::ParamInfo{offset, bits >> 18};  // size in bits 18..31
          }
          p += len;
        } else if (format == kFormatHalf) {
          p += 2;
        } else if (format == kFormatByte) {
          p += 1;
        } else if (format != kFormatNone) {
          ADD_FAILURE() << "unknown .nv.info record format " << int{format} << " in " << name;
          break;
        }
      }
    } else if (s.sh_type == SHT_SYMTAB) {
      const Elf64_Shdr& strtab = sh[s.sh_link];
      for (; p + sizeof(Elf64_Sym) <= end; p += sizeof(Elf64_Sym)) {
        Elf64_Sym sym;
        std::memcpy(&sym, p, sizeof(sym));
        // Whole-program builds make __device__ variables local symbols.
        const std::string sym_name = str(strtab, sym.st_name);
        if (ELF64_ST_TYPE(sym.st_info) == STT_OBJECT && !sym_name.empty() && sym_name[0] != '.' &&
            sym_name[0] != '$') {
          out.objects[sym_name] = sym.st_size;
        }
      }
    }
  }
  return out;
}

// The fake module image's `kernel` and `global` lines.
void ParseFakeModule(const std::string& path, std::vector<std::string>* kernels,
                     std::map<std::string, uint64_t>* globals) {
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << path;
  EXPECT_EQ(line, kFakeModuleMagic);
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "kernel") kernels->push_back(name);
    if (kind == "global") words >> (*globals)[name];
  }
}

TEST(KernelLayoutTest, FakeKernelsMirrorTheCubin) {
  const std::vector<uint8_t> elf = ReadFile(WOOLY_TEST_CUBIN);
  if (elf.empty()) GTEST_SKIP() << "no cubin (nvcc absent)";
  const Cubin cubin = ParseCubin(elf);
  RegisterTestKernels();

  std::vector<std::string> cubin_names;
  for (const auto& [name, params] : cubin.kernels) cubin_names.push_back(name);
  EXPECT_THAT(TestKernelNames(), UnorderedElementsAreArray(cubin_names));

  for (const auto& [name, params] : cubin.kernels) {
    SCOPED_TRACE(name);
    std::optional<FakeKernel> fake = FindFakeKernel(name);
    ASSERT_TRUE(fake.has_value());
    ASSERT_EQ(fake->params.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(fake->params[i].offset, params[i].offset) << "param " << i;
      EXPECT_EQ(fake->params[i].size, params[i].size) << "param " << i;
    }
  }
}

TEST(KernelLayoutTest, FakeModuleListsTheCubinsKernelsAndGlobals) {
  const std::vector<uint8_t> elf = ReadFile(WOOLY_TEST_CUBIN);
  if (elf.empty()) GTEST_SKIP() << "no cubin (nvcc absent)";
  const Cubin cubin = ParseCubin(elf);
  std::vector<std::string> kernels;
  std::map<std::string, uint64_t> globals;
  ParseFakeModule(WOOLY_TEST_FAKE_MODULE, &kernels, &globals);

  std::vector<std::string> cubin_names;
  for (const auto& [name, params] : cubin.kernels) cubin_names.push_back(name);
  EXPECT_THAT(kernels, UnorderedElementsAreArray(cubin_names));
  EXPECT_EQ(globals, cubin.objects);
}

}  // namespace
}  // namespace wooly::fake
