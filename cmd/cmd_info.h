/*
 * cmd_info.h - `tttd info MODEL_DIR [--json]`: prints what a model folder holds.
 *
 * For a diffusers pipeline folder (model_index.json) it reads every component the index lists;
 * for a single component folder (config.json or scheduler_config.json, no model_index.json) it
 * reads that one. Per component it prints the key fields of its config, the weights found
 * (files, tensors, parameter count, bytes, tensors per dtype) and, for tokenizers, the tokenizer
 * files present. --json prints one JSON object instead of text.
 */
#ifndef TTTD_CMD_INFO_H
#define TTTD_CMD_INFO_H

#include <stdio.h>

/*
 * Runs the subcommand. argv[0] is the subcommand's name ("info"), the rest its arguments.
 * Output goes to out; a failure writes one line naming the file at fault to errout.
 * Returns the process exit status: 0 success (also for --help, whose usage goes to out),
 * 1 the model folder could not be read (missing folder, model_index.json, component folder,
 * corrupt JSON or safetensors), 2 bad usage (usage goes to errout). Nothing is written to out
 * when the status is not 0, except usage for --help.
 */
int cmd_info(int argc, char **argv, FILE *out, FILE *errout);

#endif
