/* longkv.c -- the command-line tool: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "longkv.h"

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"info", cli_info, "CPU features and the active kernels"},
    {"bench", cli_bench, "benchmarks: attn | kv | model (see `longkv bench --help`)"},
    {"run", cli_run, "generate text with a model through the longkv cache"},
    {"perplexity", cli_perplexity, "perplexity of a text file"},
    {"presses", cli_presses, "list the KV compression policies and their parameters"},
    {"eval", cli_eval, "accuracy / memory / speed sweeps with reports and plots"},
};

static void usage(FILE *f) {
    fprintf(f, "longkv %s -- long-context LLM inference on CPUs within a memory budget\n\n"
               "usage: longkv COMMAND [options]   (longkv COMMAND --help for details)\n\n",
            lkv_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("longkv %s\n", lkv_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "longkv: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
