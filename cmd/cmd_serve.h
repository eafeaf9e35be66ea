/*
 * cmd_serve.h - `tttd serve`'s entry: the daemon's options as one table (cmd/args.h), read from
 * flags, TTTD_* environment variables and a JSON config file, then the daemon itself
 * (server/serve.h).
 *
 * A value comes from, in order of precedence: a command-line flag (--name VALUE, --name=VALUE,
 * --name / --no-name for booleans), the environment (TTTD_NAME, dashes as underscores; list
 * options take comma-separated values), a JSON config file (--config FILE or TTTD_CONFIG: an
 * object whose keys are option names, with arrays for list options), and the table's default.
 * A list option set by a source replaces what lower sources gave it; repeated flags append to
 * each other. Not thread-safe; run once at start-up.
 */
#ifndef TTTD_CMD_SERVE_H
#define TTTD_CMD_SERVE_H

#include <stdio.h>

#include "cmd/args.h"
#include "server/options.h"

/*
 * Runs the subcommand; argv[0] is "serve". Returns the exit status: 0 after a clean shutdown
 * (and for --help), 1 when the server could not start, a model could not be loaded or the key
 * file is bad, 2 for bad options (a message goes to errout), SRV_EXIT_DRAIN_TIMEOUT (3) when the
 * drain timed out and unfinished jobs were canceled.
 */
int cmd_serve(int argc, char **argv, FILE *out, FILE *errout);

/*
 * Fills o from argv (argv[0] is skipped), envp (NULL-terminated "NAME=VALUE" strings, may be
 * NULL) and the config file they name, then checks and derives what the daemon needs
 * (srv_options_finish: models, keys). Returns -1 when the daemon may start, else the exit status:
 * 0 after --help (the help went to out), 2 after a bad option, 1 when the key file cannot be
 * read or holds a bad key (a one-line message naming the option, the value and, when not a flag,
 * its source went to errout). o is always left safe to pass to srv_options_free.
 */
int cmd_serve_options(srv_options *o, int argc, char **argv, char *const *envp, FILE *out,
                      FILE *errout);

/* The table (for tests and the help). */
const cmd_args_spec *cmd_serve_spec(void);

#endif
