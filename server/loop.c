/*
 * loop.c - libmicrohttpd's external epoll mode inside the libuv loop (see loop.h).
 *
 * MHD's epoll fd becomes readable whenever one of MHD's sockets (or its resume signal) is ready,
 * so one uv_poll_t on it is enough; MHD_get_timeout covers connection timeouts and work MHD has
 * buffered without a socket event (it then answers 0, and the timer fires on the next iteration).
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
#include <unistd.h>

#include "engine/core/log.h"

static void on_timer(uv_timer_t *t);

/* Re-arms the timer from MHD's own idea of when it next needs to run. */
static void rearm(srv_mhd_loop *l)
{
    MHD_UNSIGNED_LONG_LONG timeout = 0;
    if (MHD_get_timeout(l->daemon, &timeout) == MHD_YES)
        uv_timer_start(&l->timer, on_timer, (uint64_t)timeout, 0);
    else
        uv_timer_stop(&l->timer);
}

static void on_timer(uv_timer_t *t)
{
    srv_mhd_loop *l = t->data;
    if (!l->open)
        return;
    MHD_run(l->daemon);
    rearm(l);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    srv_mhd_loop *l = p->data;
    (void)events;
    if (status < 0)
        LOG_WARN("http: polling MHD's epoll fd: %s", uv_strerror(status));
    if (!l->open)
        return;
    MHD_run(l->daemon);
    rearm(l);
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
    if (l->open)
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
