/* error.h -- error reporting inside the library.
 *
 * Every failing path records a message in a thread-local buffer and returns a
 * negative lkv_error code. Two macros keep call sites short:
 *   LKV_FAIL(code, fmt, ...)   records and returns code
 *   LKV_TRY(expr)              forwards a negative result of expr
 */
#ifndef LKV_COMMON_ERROR_H
#define LKV_COMMON_ERROR_H

#include "longkv.h"

#if defined(__GNUC__)
#define LKV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LKV_PRINTF(a, b)
#endif

/* Records the message for lkv_last_error() and returns code (for `return`). */
int lkv_set_error(int code, const char *fmt, ...) LKV_PRINTF(2, 3);

/* Clears the calling thread's message. */
void lkv_clear_error(void);

#define LKV_FAIL(code, ...) return lkv_set_error((code), __VA_ARGS__)

#define LKV_TRY(expr)                  \
    do {                               \
        int lkv_try_rc_ = (expr);      \
        if (lkv_try_rc_ < 0)           \
            return lkv_try_rc_;        \
    } while (0)

#endif
