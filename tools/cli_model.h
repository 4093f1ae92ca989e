/* cli_model.h -- what the model commands (run, perplexity, bench model) share:
 * finding a model by alias, parsing numbers, the --press check, timing.
 * Front-end code: includes only longkv.h. */
#ifndef LKV_CLI_MODEL_H
#define LKV_CLI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"

/* Resolves -m: an alias ("smollm2") becomes its file under models/ of the repo
 * (searched from the executable's folder upwards, then $LONGKV_ROOT, then the
 * current directory); anything else is a path. Writes the path into out[cap].
 * Returns 0, or -1 after printing a message that says how to get the model. */
int cli_resolve_model(const char *cmd, const char *arg, char *out, size_t cap);

/* Loads the model named by -m (alias or path); prints the error and returns
 * NULL on failure. */
lkv_model *cli_load_model(const char *cmd, const char *arg);

/* Strict number parsing: the whole string, inside [lo, hi]. 0 ok, -1 after a
 * usage message naming the option. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out);

/* --press SPEC: validates SPEC (0 ok, -1 after printing why) and, when out is
 * not NULL, creates the policy (*out = NULL for the full cache). */
int cli_check_press(const char *cmd, const char *spec);
int cli_make_press(const char *cmd, const char *spec, lkv_press **out);

/* Prints the policy report of ctx to stderr (nothing for the full cache). */
void cli_print_press_report(const lkv_ctx *ctx);

/* Default thread count: the CPUs this process may run on (at least 1). */
int cli_default_threads(void);

/* Reads a whole file (NUL-terminated); NULL after printing an error. Free with free(). */
char *cli_read_file(const char *cmd, const char *path, size_t *len);

/* Monotonic seconds. */
double cli_now(void);

/* CPU seconds used by the whole process (all threads): with the wall time it
 * shows how much of a run other processes took on a shared machine. */
double cli_cpu_now(void);

#endif
