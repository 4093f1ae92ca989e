/* bench.h -- the benchmarks behind `longkv bench SUB`, one file each. Each
 * returns the process exit status (0 ok, 1 a case or measurement failed,
 * 2 usage error). Front-end code: includes only longkv.h. */
#ifndef LKV_BENCH_H
#define LKV_BENCH_H

int bench_attn(int argc, char **argv); /* bench/bench_attn.c */
int bench_kv(int argc, char **argv);   /* bench/bench_kv.c */
int bench_model(int argc, char **argv); /* bench/bench_model.c */

#endif
