/*
 * serve.h - the HTTP daemon (DESIGN.md 5), run by `tttd serve` (cmd/cmd_serve.c reads its
 * options).
 *
 * With the options filled, reads the models' configs,
 * listens, prints "listening on HOST:PORT" as the first line of out (flushed: with --port 0
 * this is how a caller learns the port), starts the workers (they load the models while
 * /healthz already answers and /readyz says 503), and runs the libuv loop until SIGTERM or
 * SIGINT. Then it stops accepting, lets queued and running work finish within --drain-timeout,
 * cancels what is left (503 shutting down), stops the workers and frees everything.
 */
#ifndef TTTD_SERVER_SERVE_H
#define TTTD_SERVER_SERVE_H

#include <stdio.h>

#include "server/options.h"

/* The exit status after a shutdown whose --drain-timeout passed with jobs still unfinished
 * (they were canceled: work was lost). */
#define SRV_EXIT_DRAIN_TIMEOUT 3

/*
 * Runs the daemon with o (filled and finished: srv_options_finish), which must outlive the call.
 * Returns the exit status: 0 after a clean shutdown, 1 when the server could not start or a model
 * could not be loaded, 2 when the options ask for what this machine lacks (--device cuda without
 * a GPU, ...; a message goes to errout), SRV_EXIT_DRAIN_TIMEOUT (3) when the drain timed out and
 * unfinished jobs were canceled.
 */
int srv_serve_run(const srv_options *o, FILE *out, FILE *errout);

#endif
