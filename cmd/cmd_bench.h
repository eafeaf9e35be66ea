/*
 * cmd_bench.h - `tttd bench`: times the MMDiT transformer (one forward, or a whole denoising
 * loop) on the CPU backend, with a model folder or a random-weight tiny model made on the spot.
 * Informative only: the numbers depend on the machine, its load and OMP_NUM_THREADS.
 */
#ifndef TTTD_CMD_BENCH_H
#define TTTD_CMD_BENCH_H

#include <stdio.h>

/*
 * Runs the subcommand. argv[0] is the subcommand's name ("bench"), the rest its options
 * (`tttd bench --help` lists them). The report goes to out, errors to errout as one line.
 * Returns the process exit status: 0 success (also for --help), 1 the model could not be made,
 * loaded or run, 2 bad usage (usage goes to errout).
 */
int cmd_bench(int argc, char **argv, FILE *out, FILE *errout);

#endif
