// CPU features, detected once at run time: the one place the motion-compensation ops
// (csrc/cpu) and the convolution engine (csrc/conv_cpu) ask which SIMD paths this CPU runs.
//
// MTU_X86 is defined where x86 SIMD code may be compiled at all (x86-64 with GCC or Clang);
// elsewhere (ARM, other compilers) every query answers false, only the portable code is
// compiled, and nothing x86-specific reaches the compiler. Defining MTU_NO_X86 builds the
// portable code on x86 too: tests/test_build_guards.py compiles the sources that way.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MTU_NO_X86)
#define MTU_X86 1
#endif

namespace mtu {
namespace cpu {

#ifdef MTU_X86
// AVX2 (256-bit vectors: the correlation kernels)
inline bool has_avx2() { static const bool v = __builtin_cpu_supports("avx2"); return v; }
// AVX2 with fused multiply-add (the convolution engine's 8-lane kernels)
inline bool has_avx2_fma() { return has_avx2() && __builtin_cpu_supports("fma"); }
// AVX-512 Foundation (the convolution engine's 16-lane kernels)
inline bool has_avx512f() { static const bool v = __builtin_cpu_supports("avx512f"); return v; }
// An AMD CPU (the convolution engine's choice of broadcasts, conv_cpu.cpp)
inline bool is_amd() { static const bool v = __builtin_cpu_is("amd"); return v; }
#else
inline bool has_avx2() { return false; }
inline bool has_avx2_fma() { return false; }
inline bool has_avx512f() { return false; }
inline bool is_amd() { return false; }
#endif

}  // namespace cpu
}  // namespace mtu
