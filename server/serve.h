/*
 * serve.h - `tttd serve`: the HTTP daemon (DESIGN.md 5).
 *
 * Reads the options (flags, TTTD_* environment, --config file), reads the models' configs,
 * listens, prints "listening on HOST:PORT" as the first line of out (flushed: with --port 0
 * this is how a caller learns the port), starts the workers (they load the models while
 * /healthz already answers and /readyz says 503), and runs the libuv loop until SIGTERM or
 * SIGINT. Then it stops accepting, lets queued and running work finish within --drain-timeout,
 * cancels what is left (503 shutting down), stops the workers and frees everything.
 */
#ifndef TTTD_SERVER_SERVE_H
#define TTTD_SERVER_SERVE_H

#include <stdio.h>

/* The exit status after a shutdown whose --drain-timeout passed with jobs still unfinished
 * (they were canceled: work was lost). */
#define SRV_EXIT_DRAIN_TIMEOUT 3

/*
 * Runs the subcommand; argv[0] is "serve". Returns the exit status: 0 after a clean shutdown
 * (and for --help), 1 when the server could not start or a model could not be loaded, 2 for bad
 * options (a message goes to errout), SRV_EXIT_DRAIN_TIMEOUT (3) when the drain timed out and
 * unfinished jobs were canceled.
 */
int srv_cmd_serve(int argc, char **argv, FILE *out, FILE *errout);

#endif
