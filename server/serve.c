/*
 * serve.c - the daemon: start-up in order (models, metrics, loop, socket, HTTP, workers,
 * signals), the run, and the shutdown: drain, then cancel, then stop (see serve.h).
 *
 * Start-up failures unwind with goto labels in reverse order. The shutdown is a small state
 * machine driven by a 20 ms timer, so every step happens on the loop thread between events:
 *   DRAINING   no new connections (MHD_quiesce_daemon), no new jobs, batches go out at once;
 *              left when nothing is pending or --drain-timeout passes
 *   CANCELING  every unfinished job is canceled (503 shutting down; if there was one, the exit
 *              status becomes 3); left when the answers are out and the workers idle, or after
 *              CANCEL_GRACE_MS
 *   STOPPED    handles closed, MHD stopped, workers joined; uv_run returns
 */
#include "server/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>
#include <uv.h>

#include "engine/backend/backend.h"
#include "engine/core/log.h"
#include "server/http.h"
#include "server/loop.h"
#include "server/metrics.h"
#include "server/models.h"
#include "server/options.h"
#include "server/sched.h"
#include "server/worker.h"

#define SHUTDOWN_TICK_MS 20
#define CANCEL_GRACE_MS 5000
#define LISTEN_BACKLOG 511
#define IDLE_CONNECTION_TIMEOUT_S 60

enum { RUNNING = 0, DRAINING, CANCELING, STOPPED };

typedef struct server {
    const srv_options *opts;
    srv_models models;
    srv_metrics *metrics;
    uv_loop_t loop;
    int listen_fd;
    struct MHD_Daemon *daemon;
    srv_mhd_loop mhd;
    srv_http *http;
    srv_sched sched;
    srv_sched_events events;
    uv_signal_t sigterm, sigint;
    uv_timer_t shutdown_timer;
    int phase;
    double deadline_ms;
    int exit_code;
} server;

/* ---- shutdown ---- */

static void stop_now(server *s)
{
    s->phase = STOPPED;
    uv_timer_stop(&s->shutdown_timer);
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    /* MHD may not be stopped with suspended connections: resume them all first. */
    srv_http_resume_all(s->http);
    MHD_run(s->daemon); /* lets the resumed ones be answered or closed */
    srv_mhd_loop_close(&s->mhd);
    MHD_stop_daemon(s->daemon); /* completes (and frees) every request left */
    s->daemon = NULL;
    srv_sched_close(&s->sched); /* joins the workers */
    srv_http_free(s->http);
    s->http = NULL;
    if (s->exit_code)
        LOG_INFO("stopped (exit status %d)", s->exit_code);
    else
        LOG_INFO("stopped");
}

static int quiet(server *s)
{
    return srv_sched_pending(&s->sched) == 0 && srv_http_in_flight(s->http) == 0;
}

static void on_shutdown_tick(uv_timer_t *t)
{
    server *s = t->data;
    double now = srv_now_ms();
    if (s->phase == DRAINING) {
        if (quiet(s)) {
            LOG_INFO("drained: every request answered");
            stop_now(s);
        } else if (now >= s->deadline_ms) {
            int lost = srv_sched_unfinished(&s->sched);
            /* Work was dropped: say so in the exit status (SRV_EXIT_DRAIN_TIMEOUT), so that
             * systemd and Kubernetes see it, unless an earlier failure set one already. */
            if (lost > 0 && s->exit_code == 0)
                s->exit_code = SRV_EXIT_DRAIN_TIMEOUT;
            if (lost > 0)
                LOG_WARN("drain timeout: canceling %d unfinished job(s); exit status %d", lost,
                         SRV_EXIT_DRAIN_TIMEOUT);
            else
                LOG_WARN("drain timeout: canceling 0 unfinished job(s)");
            srv_sched_cancel_all(&s->sched, SRV_CANCEL_SHUTDOWN);
            s->phase = CANCELING;
            s->deadline_ms = now + CANCEL_GRACE_MS;
        }
    } else if (s->phase == CANCELING) {
        if (quiet(s) || now >= s->deadline_ms)
            stop_now(s);
    }
}

static void begin_shutdown(server *s, double drain_ms)
{
    if (s->phase != RUNNING)
        return;
    s->phase = DRAINING;
    s->deadline_ms = srv_now_ms() + drain_ms;
    MHD_socket ls = MHD_quiesce_daemon(s->daemon);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    s->listen_fd = -1;
    srv_http_set_draining(s->http);
    srv_sched_drain(&s->sched);
    uv_timer_start(&s->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_TICK_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (s->phase == RUNNING) {
        LOG_INFO("%s: draining (up to %lld ms), then stopping", strsignal(signum),
                 (long long)s->opts->drain_timeout_ms);
        begin_shutdown(s, (double)s->opts->drain_timeout_ms);
    } else if (s->phase == DRAINING) {
        /* A second signal: do not wait for the drain timeout. */
        LOG_WARN("%s again: canceling the remaining work now", strsignal(signum));
        s->deadline_ms = 0;
    }
}

static void on_load_state(void *user, srv_load_state state, const char *msg)
{
    server *s = user;
    if (state == SRV_LOAD_READY) {
        LOG_INFO("ready: %d worker(s) loaded %d model(s)", srv_sched_workers(&s->sched),
                 s->models.n);
        return;
    }
    LOG_ERROR("loading failed: %s", msg);
    s->exit_code = 1;
    begin_shutdown(s, 0);
}

static void on_queue_moved(void *user)
{
    server *s = user;
    if (s->http)
        srv_http_queue_moved(s->http);
}

/* ---- start-up ---- */

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    LOG_WARN("libmicrohttpd: %s", line);
}

/* Chooses the backend and the worker count; 0, or -1 with a message. */
static int plan_workers(const srv_options *o, srv_pool_config *pc, FILE *errout)
{
    int want_cuda = o->device == SRV_DEVICE_CUDA ||
                    (o->device == SRV_DEVICE_AUTO && eng_backend_cuda_available());
    int gpus = 0;
    if (want_cuda) {
        /* One worker per GPU that answers (each is probed once, then released). */
        int most = o->gpus > 0 ? o->gpus : 64;
        eng_error err = {0};
        for (; gpus < most; gpus++) {
            eng_backend *be = eng_backend_cuda_create(gpus, &err);
            if (!be)
                break;
            eng_backend_destroy(be);
        }
        if (gpus == 0 && o->device == SRV_DEVICE_CUDA) {
            fprintf(errout, "tttd serve: --device cuda: %s\n",
                    err.msg[0] ? err.msg : "no GPU found");
            return -1;
        }
        if (o->gpus > 0 && gpus < o->gpus && o->device == SRV_DEVICE_CUDA) {
            fprintf(errout, "tttd serve: --gpus %d: only %d GPU(s) found\n", o->gpus, gpus);
            return -1;
        }
    }
    pc->cuda = gpus > 0;
    pc->n_workers = pc->cuda ? gpus : o->workers;
    if (o->dtype == SRV_DTYPE_BF16 && !pc->cuda) {
        fprintf(errout, "tttd serve: --dtype bf16 needs a GPU (none is in use)\n");
        return -1;
    }
    pc->dtype = o->dtype == SRV_DTYPE_BF16 || (o->dtype == SRV_DTYPE_AUTO && pc->cuda)
                    ? ENG_DTYPE_BF16
                    : ENG_DTYPE_F32;
    return 0;
}

int srv_serve_run(const srv_options *o, FILE *out, FILE *errout)
{
    server *s = calloc(1, sizeof *s);
    char err[1024], addr[80];
    int status = 1, port = 0, ipv6 = 0, rc;
    if (!s) {
        fprintf(errout, "tttd serve: out of memory\n");
        return 1;
    }
    s->opts = o;
    s->listen_fd = -1;
    eng_log_set_level((eng_log_level)o->log_level);
    signal(SIGPIPE, SIG_IGN); /* a client hanging up mid-answer is an error code, not a signal */

    if (srv_models_init(&s->models, s->opts->models, s->opts->n_models, err, sizeof err)) {
        fprintf(errout, "tttd serve: %s\n", err);
        goto out_models;
    }
    if (s->opts->n_models == 0)
        LOG_INFO("no --model: serving %s as \"default\"%s", s->models.v[0].dir,
                 strstr(s->models.v[0].dir, "tiny_model") ? " (the tiny test model: random "
                                                            "weights, it draws noise)" : "");
    srv_pool_config pc = {.models = s->models.v, .n_models = s->models.n};
    if (plan_workers(s->opts, &pc, errout)) {
        status = 2;
        goto out_models;
    }
    if (!(s->metrics = srv_metrics_new())) {
        fprintf(errout, "tttd serve: out of memory\n");
        goto out_models;
    }
    if ((rc = uv_loop_init(&s->loop))) {
        fprintf(errout, "tttd serve: uv_loop_init: %s\n", uv_strerror(rc));
        goto out_metrics;
    }
    if (srv_listen(s->opts->host, s->opts->port, LISTEN_BACKLOG, &s->listen_fd, &port, &ipv6, addr,
                   sizeof addr, err, sizeof err)) {
        fprintf(errout, "tttd serve: %s\n", err);
        goto out_loop;
    }

    srv_http_config hc = {.opts = s->opts, .metrics = s->metrics, .sched = &s->sched,
                          .models = &s->models, .mhd = &s->mhd};
    if ((rc = srv_http_new(&s->http, &s->loop, &hc))) {
        fprintf(errout, "tttd serve: %s\n", strerror(-rc));
        goto out_socket;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
                     MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, srv_http_handler, s->http, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
        NULL, MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_NOTIFY_COMPLETED,
        srv_http_completed, s->http, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->opts->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IDLE_CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)SRV_HTTP_CONNECTION_MEMORY, MHD_OPTION_END);
    if (!s->daemon) {
        fprintf(errout, "tttd serve: libmicrohttpd could not start on %s\n", addr);
        goto out_http;
    }
    s->listen_fd = -1; /* the daemon owns it now (MHD_quiesce_daemon hands it back) */
    if ((rc = srv_mhd_loop_start(&s->mhd, &s->loop, s->daemon))) {
        fprintf(errout, "tttd serve: watching libmicrohttpd: %s\n", uv_strerror(rc));
        goto out_daemon;
    }

    s->events = *srv_http_sched_events();
    s->events.load_state = on_load_state;
    s->events.queue_moved = on_queue_moved;
    if ((rc = srv_sched_init(&s->sched, &s->loop, s->opts, s->metrics, &pc, &s->events, s))) {
        fprintf(errout, "tttd serve: starting the workers: %s\n", strerror(-rc));
        goto out_mhd_loop;
    }
    uv_timer_init(&s->loop, &s->shutdown_timer);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    s->shutdown_timer.data = s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);

    /* The first line of stdout: tests and scripts read the port from it. */
    fprintf(out, "listening on %s\n", addr);
    fflush(out);
    LOG_INFO("listening on %s: %d %s worker(s), max batch %d, queue %d, %d model(s)", addr,
             pc.n_workers, pc.cuda ? "CUDA" : "CPU", s->opts->max_batch, s->opts->max_queue,
             s->models.n);

    uv_run(&s->loop, UV_RUN_DEFAULT);
    status = s->exit_code;
    /* stop_now closed and freed everything the run used; the loop now has no handle left. */
    goto out_loop;

out_mhd_loop:
    srv_mhd_loop_close(&s->mhd);
out_daemon:
    MHD_stop_daemon(s->daemon);
out_http:
    srv_http_free(s->http);
out_socket:
    if (s->listen_fd >= 0)
        close(s->listen_fd);
out_loop:
    uv_run(&s->loop, UV_RUN_DEFAULT); /* finishes the uv_close calls */
    if (uv_loop_close(&s->loop))
        LOG_WARN("the event loop still had handles at exit");
out_metrics:
    srv_metrics_free(s->metrics);
out_models:
    srv_models_free(&s->models);
    free(s);
    return status;
}
