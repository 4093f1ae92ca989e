/* memory.c -- resident set size of this process (peak and current), for the
 * peak_rss column of result rows. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "eval/eval.h"

/* Reads "<field>:  <n> kB" from /proc/self/status; -1 if absent. */
static int64_t proc_status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t fl = strlen(field);
    long long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            if (sscanf(line + fl + 1, "%lld", &kb) != 1)
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb;
}

int64_t lkv_peak_rss_bytes(void) {
    /* The kernel folds per-thread RSS counters into VmHWM lazily, so the peak
     * it shows can trail the current RSS by a few pages: take the larger. */
    int64_t kb = proc_status_kb("VmHWM");
    if (kb >= 0) {
        int64_t cur = proc_status_kb("VmRSS");
        return (cur > kb ? cur : kb) * 1024;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0)
        return (int64_t)ru.ru_maxrss * 1024; /* kilobytes on Linux and the BSDs */
    return -1;
}

int64_t lkv_rss_bytes(void) {
    int64_t kb = proc_status_kb("VmRSS");
    return kb >= 0 ? kb * 1024 : -1;
}

int lkv_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "cannot reset the peak RSS (no /proc/self/clear_refs)");
    int ok = fputs("5", f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "cannot reset the peak RSS (clear_refs refused)");
    return LKV_OK;
}
