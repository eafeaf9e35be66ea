/*
 * loop.c - libmicrohttpd's external epoll mode inside the libuv loop (see loop.h).
 *
 * MHD's epoll fd becomes readable whenever one of MHD's sockets (or its inter-thread channel,
 * which MHD_resume_connection signals) is ready, so one uv_poll_t on it is enough; MHD_get_timeout
 * covers connection timeouts and work MHD has buffered without a socket event (it then answers 0,
 * and the timer fires on the next iteration).
 *
 * Two things MHD 0.9.75 needs that neither of those gives (read from its daemon.c):
 *
 * - At the connection limit MHD_epoll takes the listening socket out of its epoll set, and puts it
 *   back only at the start of a later MHD_epoll once a connection has been freed. Connections
 *   are freed by MHD_cleanup_connections at the very end of MHD_run, after the epoll set has been
 *   updated; if no other connection is left, MHD_get_timeout then says "no timeout" and no socket
 *   of the set ever becomes ready again: the server would never accept another client. So
 *   whenever a run leaves fewer connections than it found, MHD is run once more at once.
 *   (While the listening socket is out of the set no connection can be added, so a run that
 *   starts outside the set can only lose connections; the rule catches every such case, and
 *   MHD's own at_limit flag, also cleared only by a cleanup, the same way.)
 *
 * - A kick asked for inside MHD_run (a resume from one of MHD's callbacks) must survive the
 *   timer being re-armed from MHD_get_timeout when that run returns: it is remembered and the
 *   timer started at 0 after the run, whatever MHD says.
 */
#include "server/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/core/log.h"

double srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_timer(uv_timer_t *t);

/* MHD's count of open connections; asking for it also frees the closed ones. */
static unsigned connections_of(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

/* Re-arms the timer from MHD's own idea of when it next needs to run, unless a run at once is
 * owed (a kick during the run, or connections freed: see the top of the file). */
static void rearm(srv_mhd_loop *l)
{
    MHD_UNSIGNED_LONG_LONG timeout = 0;
    if (l->kicked) {
        l->kicked = 0;
        uv_timer_start(&l->timer, on_timer, 0, 0);
    } else if (MHD_get_timeout(l->daemon, &timeout) == MHD_YES) {
        uv_timer_start(&l->timer, on_timer, (uint64_t)timeout, 0);
    } else {
        uv_timer_stop(&l->timer);
    }
}

static void run(srv_mhd_loop *l)
{
    l->running = 1;
    MHD_run(l->daemon);
    l->running = 0;
    unsigned n = connections_of(l->daemon);
    if (n < l->connections)
        l->kicked = 1;
    l->connections = n;
    rearm(l);
}

static void on_timer(uv_timer_t *t)
{
    srv_mhd_loop *l = t->data;
    if (!l->open)
        return;
    run(l);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    srv_mhd_loop *l = p->data;
    (void)events;
    if (status < 0)
        LOG_WARN("http: polling MHD's epoll fd: %s", uv_strerror(status));
    if (!l->open)
        return;
    run(l);
}

int srv_mhd_loop_start(srv_mhd_loop *l, uv_loop_t *loop, struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info)
        return UV_EINVAL;
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->daemon = daemon;
    int rc = uv_poll_init(loop, &l->poll, info->epoll_fd);
    if (rc)
        return rc;
    uv_timer_init(loop, &l->timer);
    l->poll.data = l->timer.data = l;
    l->open = 1;
    if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_poll))) {
        srv_mhd_loop_close(l);
        return rc;
    }
    rearm(l);
    return 0;
}

void srv_mhd_loop_kick(srv_mhd_loop *l)
{
    if (!l->open)
        return;
    if (l->running)
        l->kicked = 1; /* rearm() starts the timer at 0 once MHD_run returns */
    else
        uv_timer_start(&l->timer, on_timer, 0, 0);
}

void srv_mhd_loop_close(srv_mhd_loop *l)
{
    if (!l->open)
        return;
    l->open = 0;
    uv_poll_stop(&l->poll);
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->poll, NULL);
    uv_close((uv_handle_t *)&l->timer, NULL);
}

int srv_listen(const char *host, int port, int backlog, int *fd, int *bound_port, int *ipv6,
               char *addr, size_t addrlen, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "--host %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int s = -1, e = 0;
    struct addrinfo *ai;
    for (ai = res; ai; ai = ai->ai_next) {
        s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, ai->ai_addr, ai->ai_addrlen) == 0 && listen(s, backlog) == 0)
            break;
        e = errno;
        close(s);
        s = -1;
    }
    if (s < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(e));
        freeaddrinfo(res);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    getsockname(s, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        *bound_port = ntohs(a->sin6_port);
        *ipv6 = 1;
        snprintf(addr, addrlen, "[%s]:%d", ip, *bound_port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        *bound_port = ntohs(a->sin_port);
        *ipv6 = 0;
        snprintf(addr, addrlen, "%s:%d", ip, *bound_port);
    }
    freeaddrinfo(res);
    *fd = s;
    return 0;
}
