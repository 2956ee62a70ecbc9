/* Name mangling for the templated kernels: FL_FN(softmax) -> softmax_f32 while
 * FL_SUF is f32.  Included by kernels_all.h before each instantiation. */
#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_FN(name) FL_CAT(name, FL_SUF)
