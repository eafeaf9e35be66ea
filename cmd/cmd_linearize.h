/*
 * cmd_linearize.h - `tttd linearize IN_DIR OUT_DIR --map MAP [--seed N] [--force]`: makes a TTT
 * checkpoint from a softmax SD3 checkpoint (engine/models/linearize.h does the work and documents the
 * output) and prints a summary: the modules linearized, the new tensors and parameters.
 */
#ifndef TTTD_CMD_LINEARIZE_H
#define TTTD_CMD_LINEARIZE_H

#include <stdio.h>

/*
 * Runs the subcommand. argv[0] is the subcommand's name ("linearize"), the rest its arguments.
 * The summary goes to out; a failure writes one line to errout. Returns the process exit status:
 * 0 success (also for --help, whose usage goes to out), 1 the conversion failed (the line names
 * the file, module or folder at fault), 2 bad usage (usage goes to errout).
 */
int cmd_linearize(int argc, char **argv, FILE *out, FILE *errout);

#endif
