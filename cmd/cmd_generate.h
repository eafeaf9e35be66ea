/*
 * cmd_generate.h - `tttd generate`: text to image offline, written to PNG or JPEG files.
 *
 * Loads a diffusers SD3 pipeline folder (engine/pipeline.h), generates -n images of one prompt in
 * one batch (image k from seed + k, or from a latents file), and writes OUT (n = 1) or
 * OUT-0.EXT, OUT-1.EXT, ... (n > 1). Progress goes to errout, the file names and per-phase
 * timings to out.
 */
#ifndef TTTD_CMD_GENERATE_H
#define TTTD_CMD_GENERATE_H

#include <stdio.h>

/*
 * Runs the subcommand. argv[0] is the subcommand's name ("generate"), the rest its options
 * (`tttd generate --help` lists them). Returns the process exit status: 0 success (also for
 * --help), 1 the model could not be loaded or run or a file could not be read or written,
 * 2 bad usage (a message and, for unknown options, the usage go to errout).
 */
int cmd_generate(int argc, char **argv, FILE *out, FILE *errout);

#endif
