/* The kernels for x86-64-v3 (AVX2 + FMA), chosen at run time on CPUs that have it. */
#include "fl_isa.h"
#if FL_MULTI_ISA
#pragma GCC target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe")
#define FL_ISA avx2
#include "kernels_all.h"
#endif
