/* cli_perplexity.c -- `longkv perplexity`: not implemented yet (says so clearly). */
#include <stdio.h>

#include "cli.h"

int cli_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "longkv perplexity: not implemented yet in this build\n");
    return 1;
}
