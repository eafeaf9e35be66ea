/*
 * cmd_tokenize.h - `tttd tokenize MODEL_DIR PROMPT [--max-length N] [--trim]`: prints the token
 * ids the text encoders would get for PROMPT.
 *
 * MODEL_DIR is a diffusers pipeline folder (its tokenizer/, tokenizer_2/, tokenizer_3/ are read,
 * those present) or a single tokenizer folder (one with tokenizer.json or vocab.json). The output
 * is one JSON object on one line, one key per folder (its name) with the ids:
 *   {"tokenizer": [49406, ...], "tokenizer_2": [...], "tokenizer_3": [...]}
 * Rows have the lengths diffusers' SD3 pipeline uses: 77 for BPE (CLIP) tokenizers, 256 for
 * Unigram (T5) ones, padded with each tokenizer's pad id; --max-length N sets every row's length,
 * --trim drops the padding. "--" ends the options (for a prompt that starts with "-").
 */
#ifndef TTTD_CMD_TOKENIZE_H
#define TTTD_CMD_TOKENIZE_H

#include <stdio.h>

/*
 * Runs the subcommand; argv[0] is its name ("tokenize"). Returns the exit status: 0 success
 * (also --help, whose usage goes to out), 1 a tokenizer folder could not be read or the prompt
 * not encoded (one line naming the folder on errout, nothing on out), 2 bad usage (on errout).
 */
int cmd_tokenize(int argc, char **argv, FILE *out, FILE *errout);

#endif
