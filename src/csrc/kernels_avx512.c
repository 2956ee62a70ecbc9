/* The kernels for x86-64-v4 (AVX-512 F/CD/VL/BW/DQ), chosen at run time on CPUs
 * that have it.  512-bit vectors are preferred: the exp polynomials are compute
 * bound and twice the lanes measured faster than 256-bit on Zen 4. */
#include "fl_isa.h"
#if FL_MULTI_ISA
#pragma GCC target("avx512f,avx512cd,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe,prefer-vector-width=512")
#define FL_ISA avx512
#include "kernels_all.h"
#endif
