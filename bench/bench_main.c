/* bench_main.c -- `longkv bench`: not implemented yet (says so clearly). */
#include <stdio.h>

#include "cli.h"

int cli_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "longkv bench: not implemented yet in this build\n");
    return 1;
}
