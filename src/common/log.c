#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int lkv_log_level(void) {
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("LONGKV_LOG");
        level = e ? atoi(e) : 0;
    }
    return level;
}

void lkv_log(int level, const char *fmt, ...) {
    if (lkv_log_level() < level)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("longkv: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
