/* force_inline.h -- forced inlining for SIMD kernels, except in sanitizer
 * builds: ASan/UBSan instrumentation of the large forced-inline kernels makes
 * compile times explode (minutes per file), so there it is a plain hint. */
#ifndef LKV_KERNELS_FORCE_INLINE_H
#define LKV_KERNELS_FORCE_INLINE_H

#ifdef LKV_NO_FORCE_INLINE
#define LKV_FORCE_INLINE inline
#else
#define LKV_FORCE_INLINE inline __attribute__((always_inline))
#endif

#endif
