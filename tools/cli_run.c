/* cli_run.c -- `longkv run`: not implemented yet (says so clearly). */
#include <stdio.h>

#include "cli.h"

int cli_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "longkv run: not implemented yet in this build\n");
    return 1;
}
