/* cli.h -- the subcommands of the longkv tool, one file each. Each returns the
 * process exit status (0 ok, 1 runtime error, 2 usage error). */
#ifndef LKV_CLI_H
#define LKV_CLI_H

int cli_info(int argc, char **argv);       /* tools/cli_info.c */
int cli_bench(int argc, char **argv);      /* bench/bench_main.c */
int cli_run(int argc, char **argv);        /* tools/cli_run.c */
int cli_perplexity(int argc, char **argv); /* tools/cli_perplexity.c */
int cli_presses(int argc, char **argv);    /* tools/cli_presses.c */
int cli_eval(int argc, char **argv);       /* tools/cli_eval.c */

#endif
