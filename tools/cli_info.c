/* cli_info.c -- `longkv info`: what this CPU supports and which kernels run. */
#include <stdio.h>

#include "cli.h"
#include "longkv.h"

int cli_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char buf[4096];
    lkv_kernels_describe(buf, sizeof buf);
    printf("longkv %s\n%s", lkv_version(), buf);
    return 0;
}
