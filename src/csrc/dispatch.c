/* dispatch.c -- choose the kernel table for this CPU; build and OpenMP facts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif
#include "fl_kernels.h"
#include "fl_isa.h"
#ifdef _OPENMP
#include <omp.h>
#endif

extern const fl_kernel_table fl_kernels_baseline;
#if FL_MULTI_ISA
extern const fl_kernel_table fl_kernels_avx2;
extern const fl_kernel_table fl_kernels_avx512;
#endif

static const char *const isa_names[FL_ISA_COUNT] = {"baseline", "avx2", "avx512"};
static int current_isa = FL_ISA_BASELINE;
const fl_kernel_table *fl_active = &fl_kernels_baseline;

static const fl_kernel_table *table_for(int level)
{
#if FL_MULTI_ISA
    if (level == FL_ISA_AVX2) return &fl_kernels_avx2;
    if (level == FL_ISA_AVX512) return &fl_kernels_avx512;
#endif
    return level == FL_ISA_BASELINE ? &fl_kernels_baseline : NULL;
}

int fl_isa_supported(int level)
{
    if (level == FL_ISA_BASELINE) return 1;
#if FL_MULTI_ISA
    __builtin_cpu_init();
    if (level == FL_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               && __builtin_cpu_supports("bmi2");
    if (level == FL_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx512cd") && fl_isa_supported(FL_ISA_AVX2);
#endif
    return 0;
}

int fl_isa_best(void)
{
    for (int level = FL_ISA_COUNT - 1; level > 0; level--)
        if (fl_isa_supported(level)) return level;
    return FL_ISA_BASELINE;
}

int fl_isa_set(int level)
{
    if (level < 0 || level >= FL_ISA_COUNT || !fl_isa_supported(level) || !table_for(level))
        return -1;
    current_isa = level;
    fl_active = table_for(level);
    return 0;
}

int fl_isa_current(void) { return current_isa; }

const char *fl_isa_name(int level)
{
    return (level >= 0 && level < FL_ISA_COUNT) ? isa_names[level] : "unknown";
}

/* The row length from which the next row is prefetched and large outputs are streamed
 * (fl_long_row_bytes) depends on how well the CPU's own prefetcher follows a
 * row-by-row sweep.  Measured at (8192, 1000) (4 KiB rows), float32, 1 thread:
 *   AMD Zen 4 (EPYC): both lost on such rows (the prefetch 15-35%, streaming about
 *     40% slower for softmax out=); the hardware keeps up.
 *   AMD Zen 5 (EPYC, family 0x1a): both gain from 1 KiB rows, at both SIMD levels and
 *     1 and 2 threads: softmax, log_softmax out= and the cross-entropy 1.1-1.7x faster.
 *   Intel Xeon (AVX-512 + AMX, 2 MiB L2): without them the max pass of every row waits
 *     on DRAM; from 1 KiB rows the prefetch gained 1.2-1.3x (float32 and float64, also
 *     at 2 threads) and streaming 1.2x more; 256-byte rows gained no more.
 * (The figures are in the commits that chose each value.)
 * Other CPUs (Zen 3 and older included, not measured) get the conservative 16 KiB. */
ptrdiff_t fl_long_row_bytes = 16384;

#if FL_MULTI_ISA
/* The CPU family of cpuid leaf 1 (base + extended), 0 if unknown */
static unsigned cpu_family(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned base = (a >> 8) & 0xf;
    return base == 0xf ? base + ((a >> 20) & 0xff) : base;
}
#endif

ptrdiff_t fl_long_row_default(void)
{
#if FL_MULTI_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) return 1024;
    if (__builtin_cpu_is("amd") && cpu_family() >= 0x1a) return 1024;
#endif
    return 16384;
}

const char *fl_build_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#elif defined(_MSC_VER)
    return "msvc";
#else
    return "unknown";
#endif
}

int fl_build_openmp(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

int fl_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fl_omp_set_num_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

void *fl_thread_scratch(size_t bytes)
{
    static __thread void *buf = NULL;
    static __thread size_t cap = 0;
    if (bytes <= cap) return buf;
    size_t want = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, want);
    if (p == NULL) return NULL;
    free(buf);
    buf = p;
    cap = want;
    return buf;
}

int fl_output_is_fresh(const void *p, size_t bytes)
{
#ifdef __linux__
    const long page = sysconf(_SC_PAGESIZE);
    if ((ptrdiff_t)bytes < FL_STREAM_MIN_BYTES || page <= 0) return 1;
    const size_t where[3] = {0, bytes / 2, bytes - 1};
    for (int i = 0; i < 3; i++) {
        const uintptr_t a = ((uintptr_t)p + where[i]) & ~(uintptr_t)(page - 1);
        unsigned char v = 0;
        if (mincore((void *)a, 1, &v) != 0 || !(v & 1)) return 1;
    }
    return 0;
#else
    (void)p;
    (void)bytes;
    return 1;
#endif
}
