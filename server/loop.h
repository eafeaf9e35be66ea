/*
 * loop.h - libmicrohttpd driven by the libuv loop: MHD runs in external-epoll mode, its epoll fd
 * watched by a uv_poll_t and its timeout by a uv_timer_t; after every event MHD_run is called and
 * the timer re-armed from MHD_get_timeout. Also the listening socket, made here so that port 0
 * can report the port the kernel chose, and the clock everything on the loop runs by (srv_now_ms).
 *
 * Thread-safety: loop thread only, but for srv_now_ms.
 */
#ifndef TTTD_SERVER_LOOP_H
#define TTTD_SERVER_LOOP_H

#include <stddef.h>

#include <microhttpd.h>
#include <uv.h>

typedef struct srv_mhd_loop {
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;
    uv_timer_t timer;
    int open;
    int running;          /* inside MHD_run */
    int kicked;           /* MHD must run again at once, whatever MHD_get_timeout says */
    unsigned connections; /* open connections after the last run */
} srv_mhd_loop;

/* Starts watching daemon (started with MHD_USE_EPOLL, no internal thread). 0 or a UV_E* code. */
int srv_mhd_loop_start(srv_mhd_loop *l, uv_loop_t *loop, struct MHD_Daemon *daemon);
/*
 * Runs MHD on the next loop iteration (after MHD_resume_connection). Never runs it from here, so
 * it is safe inside MHD's own callbacks.
 */
void srv_mhd_loop_kick(srv_mhd_loop *l);
/* Stops watching and closes the handles (before MHD_stop_daemon). */
void srv_mhd_loop_close(srv_mhd_loop *l);

/*
 * The loop's clock: monotonic milliseconds, for deadlines, latencies and the batching delay.
 * Thread-safe (the workers time their batches with it too).
 */
double srv_now_ms(void);

/*
 * A listening TCP socket on host:port (port 0: any free port), non-blocking, SO_REUSEADDR.
 * Sets *fd, *bound_port and addr ("127.0.0.1:8080", "[::1]:8080"). Returns 0, or -1 with a
 * message in err.
 */
int srv_listen(const char *host, int port, int backlog, int *fd, int *bound_port, int *ipv6,
               char *addr, size_t addrlen, char *err, size_t errlen);

#endif
