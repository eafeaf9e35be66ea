/*
 * cli.h - argument parsing and number formatting shared by the offline subcommands
 * (generate, bench, info, linearize). Stateless and thread-safe.
 */
#ifndef TTTD_SERVER_CLI_H
#define TTTD_SERVER_CLI_H

#include <stddef.h>
#include <stdint.h>

/* A decimal integer in [lo, hi] with nothing after it; 0, or -1 leaving *out untouched. */
int srv_cli_parse_int(const char *s, int lo, int hi, int *out);
/* An unsigned decimal 64-bit integer (no sign, nothing after it); 0, or -1. */
int srv_cli_parse_u64(const char *s, uint64_t *out);
/* 1234567 -> "1,234,567" into buf; returns buf. */
const char *srv_cli_fmt_count(uint64_t v, char *buf, size_t len);

#endif
