/* bench_main.c -- `longkv bench SUB`: dispatches to one file per benchmark. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

typedef struct bench_command {
    const char *name;
    int (*fn)(int, char **); /* NULL: not implemented yet */
    const char *help;
} bench_command;

static const bench_command benches[] = {
    {"attn", bench_attn, "attention kernels (decode GB/s, prefill GFLOP/s) vs measured machine limits"},
    {"kv", bench_kv, "KV cache: append, paged vs contiguous decode, fork, prefix hits, memory"},
    {"model", bench_model, "end-to-end prefill / decode tokens/s on a GGUF model"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: longkv bench SUB [options]   (longkv bench SUB --help for details)\n\n");
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        fprintf(f, "  %-8s %s%s\n", benches[i].name, benches[i].help,
                benches[i].fn ? "" : " [not implemented yet]");
}

int cli_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) {
        if (strcmp(argv[1], benches[i].name))
            continue;
        if (!benches[i].fn) {
            fprintf(stderr, "longkv bench %s: not implemented yet in this build\n", argv[1]);
            return 1;
        }
        return benches[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "longkv bench: unknown benchmark '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
