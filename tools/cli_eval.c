/* cli_eval.c -- `longkv eval`: not implemented yet (says so clearly). */
#include <stdio.h>

#include "cli.h"

int cli_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "longkv eval: not implemented yet in this build\n");
    return 1;
}
