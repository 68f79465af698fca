// Which compiled variant of the CPU loops (csrc/cpu/isa_variants.inc) this machine can run.
#pragma once

namespace dcn {

enum class Isa { kBaseline, kAvx2, kAvx512 };

inline Isa best_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

// The variant's `name` for the best ISA, e.g. DCN_PICK_ISA(kKernels).
#if defined(__x86_64__) && defined(__GNUC__)
#define DCN_PICK_ISA(name)                                            \
  (::dcn::best_isa() == ::dcn::Isa::kAvx512 ? ::dcn::cpu_avx512::name \
   : ::dcn::best_isa() == ::dcn::Isa::kAvx2 ? ::dcn::cpu_avx2::name   \
                                            : ::dcn::cpu_baseline::name)
#else
#define DCN_PICK_ISA(name) (::dcn::cpu_baseline::name)
#endif

}  // namespace dcn
