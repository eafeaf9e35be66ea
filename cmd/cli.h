/*
 * cli.h - number formatting shared by the offline subcommands (info, linearize). Argument
 * parsing is cmd/args.h's. Stateless and thread-safe.
 */
#ifndef TTTD_CMD_CLI_H
#define TTTD_CMD_CLI_H

#include <stddef.h>
#include <stdint.h>

/* 1234567 -> "1,234,567" into buf; returns buf. */
const char *cmd_fmt_count(uint64_t v, char *buf, size_t len);

#endif
