/* cli_presses.c -- `longkv presses`: not implemented yet (says so clearly). */
#include <stdio.h>

#include "cli.h"

int cli_presses(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "longkv presses: not implemented yet in this build\n");
    return 1;
}
