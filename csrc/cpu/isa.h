// Which compiled variant of the CPU loops (csrc/cpu/isa_variants.inc) this process runs.
#pragma once

#include <cstdlib>
#include <cstring>

namespace dcn {

// In order of capability: a variant runs on any CPU that runs the ones after it.
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

// The best variant, or the one named by DCN_CPU_ISA (baseline, avx2, avx512) so that tests can
// run each in turn; a variant the CPU cannot run falls back to the best one it can (never an
// illegal instruction), any other value means the best. Read once per process.
inline Isa selected_isa() {
  static const Isa chosen = [] {
    const Isa best = best_isa();
    const char* want = std::getenv("DCN_CPU_ISA");
    if (want == nullptr) return best;
    Isa forced = best;
    if (std::strcmp(want, "baseline") == 0) forced = Isa::kBaseline;
    if (std::strcmp(want, "avx2") == 0) forced = Isa::kAvx2;
    return forced < best ? forced : best;
  }();
  return chosen;
}

inline const char* isa_name(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "baseline";
}

// The variant's `name` for the selected ISA, e.g. DCN_PICK_ISA(kKernels).
#if defined(__x86_64__) && defined(__GNUC__)
#define DCN_PICK_ISA(name)                                                \
  (::dcn::selected_isa() == ::dcn::Isa::kAvx512 ? ::dcn::cpu_avx512::name \
   : ::dcn::selected_isa() == ::dcn::Isa::kAvx2 ? ::dcn::cpu_avx2::name   \
                                                : ::dcn::cpu_baseline::name)
#else
#define DCN_PICK_ISA(name) (::dcn::cpu_baseline::name)
#endif

}  // namespace dcn
