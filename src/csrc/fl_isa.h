/* Whether this compiler can build the kernels for several x86-64 instruction sets
 * in one binary (#pragma GCC target).  Elsewhere only the baseline table exists. */
#ifndef FL_ISA_H
#define FL_ISA_H
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FL_NO_MULTI_ISA)
#define FL_MULTI_ISA 1
#else
#define FL_MULTI_ISA 0
#endif
#endif
