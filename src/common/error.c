/* error.c -- error codes, their names and the per-thread last message. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[512];

const char *lkv_version(void) { return LKV_VERSION_STRING; }

const char *lkv_strerror(int code) {
    switch (code) {
    case LKV_OK: return "ok";
    case LKV_ERR_INVALID: return "invalid argument";
    case LKV_ERR_NOMEM: return "out of memory";
    case LKV_ERR_BUDGET: return "memory budget exceeded";
    case LKV_ERR_UNSUPPORTED: return "not supported";
    case LKV_ERR_IO: return "I/O error";
    case LKV_ERR_FORMAT: return "malformed or corrupt data";
    case LKV_ERR_VERSION: return "version or identity mismatch";
    case LKV_ERR_NOT_FOUND: return "not found";
    case LKV_ERR_THREAD: return "thread creation failed";
    case LKV_ERR_STATE: return "invalid state for this call";
    case LKV_ERR_RANGE: return "out of range";
    default: return "unknown error";
    }
}

const char *lkv_last_error(void) { return last_message; }

void lkv_clear_error(void) { last_message[0] = '\0'; }

int lkv_set_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(last_message, sizeof last_message, "%s", lkv_strerror(code));
    return code;
}
