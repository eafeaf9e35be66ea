/*
 * cli.h - what the offline subcommands share besides argument parsing (cmd/args.h's): number
 * formatting and the one place where an engine error becomes a message and an exit status.
 * Stateless and thread-safe.
 *
 * Exit statuses, for every subcommand: 0 done, 1 the work failed (an engine error, a file that
 * could not be written), 2 a usage error (cmd/args.h).
 */
#ifndef TTTD_CMD_CLI_H
#define TTTD_CMD_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/core/error.h"

/* 1234567 -> "1,234,567" into buf; returns buf. */
const char *cmd_fmt_count(uint64_t v, char *buf, size_t len);

/*
 * Reports a failed engine call of subcommand cmd ("generate") as "tttd <cmd>: <message>" on
 * errout, or "tttd <cmd>: <what>: <message>" when what is not NULL (err's message, or
 * eng_strerror of its code when it has none), and returns the exit status for it, 1.
 */
int cmd_engine_fail(FILE *errout, const char *cmd, const char *what, const eng_error *err);

#endif
