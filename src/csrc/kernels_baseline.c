/* The kernels for the compiler's default target (x86-64 baseline = SSE2, or the
 * native baseline of other architectures).  Always built. */
#define FL_ISA baseline
#include "kernels_all.h"
