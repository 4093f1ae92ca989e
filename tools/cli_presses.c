/* cli_presses.c -- `longkv presses [SPEC]`: list every policy, or validate a
 * spec and print it with all defaults resolved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "longkv.h"

int cli_presses(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: longkv presses          list policies, parameters and defaults\n"
               "       longkv presses SPEC     validate SPEC and print it in full\n");
        return 0;
    }
    if (argc >= 2) {
        lkv_press *p = NULL;
        int rc = lkv_press_create(argv[1], &p);
        if (rc < 0) {
            fprintf(stderr, "longkv presses: %s\n", lkv_last_error());
            return 2;
        }
        printf("%s\n", lkv_press_canonical(p));
        lkv_press_free(p);
        return 0;
    }
    size_t need = lkv_press_list(NULL, 0) + 1;
    char *buf = malloc(need);
    if (!buf)
        return 1;
    lkv_press_list(buf, need);
    fputs(buf, stdout);
    free(buf);
    return 0;
}
