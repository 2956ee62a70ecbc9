/* Name mangling for the templated kernels: FL_FN(softmax_lanes) -> softmax_lanes_f32
 * while FL_SUF is f32 (softmax_lanes_f64 while it is f64).  Included by kernels_all.h
 * before each instantiation.
 *
 * Every FL_FN function is static, and kernels_all.h is compiled once per instruction
 * set (kernels_baseline.c, kernels_avx2.c, kernels_avx512.c), so each expanded name,
 * e.g. cross_entropy_lanes_f32, exists three times, once in each of those translation
 * units; the tables fl_kernels_baseline, fl_kernels_avx2 and fl_kernels_avx512 hold
 * their addresses.  Each FL_FN definition carries a comment naming its expansions, so
 * that grep finds the definition from the name used in the table.  The kernel index
 * in docs/design.md lists every table entry with its template and callers. */
#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_FN(name) FL_CAT(name, FL_SUF)
