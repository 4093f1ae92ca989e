/* log.h -- diagnostics to stderr, off unless LONGKV_LOG=1|2 (info|debug). */
#ifndef LKV_COMMON_LOG_H
#define LKV_COMMON_LOG_H

#include "common/error.h"

int lkv_log_level(void);
void lkv_log(int level, const char *fmt, ...) LKV_PRINTF(2, 3);

#define LKV_INFO(...) lkv_log(1, __VA_ARGS__)
#define LKV_DEBUG(...) lkv_log(2, __VA_ARGS__)

#endif
