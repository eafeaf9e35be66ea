/*
 * http_guard.c - what a request must be before it is routed, and the CORS answers.
 *
 * Framing: one Content-Length (or several that agree), never beside Transfer-Encoding, and on
 * HTTP/1.1 exactly one Host (RFC 9112 sections 3.2 and 6.3): a proxy in front that reads the
 * framing another way would otherwise let a request hide inside another (request smuggling).
 *
 * Host: a browser that visits a hostile page can be made to send it to this server under the
 * page's own host name (DNS rebinding), and the page then reads the answers. The Host header
 * shows the name the browser used, so only names this server is known by pass: its listening
 * address, localhost and loopback addresses when it listens on loopback or on every address,
 * then also the machine's own addresses and host name, and --allowed-hosts. Others get 421.
 *
 * Origin: a page of another origin may POST a text/plain body without a preflight. Unless
 * --cors-origins lists its origin, such a POST (or DELETE) is refused with 403, preflights are
 * refused, and no answer carries Access-Control-Allow-Origin, so the browser hides them all.
 * The page at GET / is the server's own origin (its Origin equals the Host) and always passes.
 */
#include "server/http_internal.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- framing ---- */

typedef struct framing {
    int hosts;
    const char *host;
    int origins;
    int lengths;      /* Content-Length values seen (a "5, 5" list counts each) */
    unsigned long long length;
    int length_bad;   /* a value that is not 1*DIGIT */
    int length_differ;
    int transfer_encoding;
} framing;

/* One Content-Length header: a number, or a comma-separated list of the same number. */
static void add_length(framing *f, const char *v)
{
    for (const char *p = v;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strspn(p, "0123456789");
        const char *q = p + n;
        while (*q == ' ' || *q == '\t')
            q++;
        if (n == 0 || n > 18 || (*q && *q != ',')) {
            f->length_bad = 1;
            return;
        }
        unsigned long long x = strtoull(p, NULL, 10);
        if (f->lengths++ && x != f->length)
            f->length_differ = 1;
        f->length = x;
        if (!*q)
            return;
        p = q + 1;
    }
}

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    framing *f = cls;
    (void)kind;
    if (!value)
        value = "";
    if (!strcasecmp(key, "Host")) {
        if (!f->hosts++)
            f->host = value;
    } else if (!strcasecmp(key, "Content-Length")) {
        add_length(f, value);
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        f->transfer_encoding = 1;
    } else if (!strcasecmp(key, "Origin")) {
        f->origins++;
    }
    return MHD_YES;
}

/*
 * Splits a Host value into its host (brackets of an IPv6 literal removed) and checks the
 * grammar of RFC 3986's uri-host [":" port]. Returns 0, or -1 when it is not that.
 */
static int split_host(const char *v, char *name, size_t len, int *v6)
{
    const char *end;
    *v6 = v[0] == '[';
    if (*v6) {
        const char *close = strchr(v, ']');
        if (!close || close == v + 1)
            return -1;
        if ((size_t)(close - v - 1) >= len)
            return -1;
        memcpy(name, v + 1, (size_t)(close - v - 1));
        name[close - v - 1] = '\0';
        if (strspn(name, "0123456789abcdefABCDEF:.") != strlen(name))
            return -1;
        end = close + 1;
    } else {
        static const char reg[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789-._~!$&'()*+,;=%";
        size_t n = strspn(v, reg);
        if (n == 0 || n >= len)
            return -1;
        memcpy(name, v, n);
        name[n] = '\0';
        end = v + n;
    }
    if (*end == ':') {
        end++;
        if (strlen(end) > 5 || strspn(end, "0123456789") != strlen(end))
            return -1;
        end += strlen(end);
    }
    if (*end)
        return -1;
    /* "example.com." names the same host as "example.com". */
    size_t n = strlen(name);
    if (!*v6 && n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    return 0;
}

api_err srv_guard_framing(srv_req *r, const char *version, char *msg, size_t len)
{
    framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_header, &f);
    char name[256];
    int v6;
    if (f.length_bad)
        snprintf(msg, len, "Content-Length must be a number of bytes.");
    else if (f.length_differ)
        snprintf(msg, len, "The request has Content-Length values that disagree.");
    else if (f.lengths && f.transfer_encoding)
        snprintf(msg, len, "The request has both Content-Length and Transfer-Encoding "
                 "(RFC 9112 section 6.3).");
    else if (f.hosts > 1)
        snprintf(msg, len, "The request has %d Host headers; one is allowed.", f.hosts);
    else if (f.hosts == 0 && version && strcasecmp(version, "HTTP/1.0") != 0)
        snprintf(msg, len, "%s requires a Host header.", version);
    else if (f.hosts == 1 && split_host(f.host, name, sizeof name, &v6))
        snprintf(msg, len, "The Host header \"%.80s\" is not host[:port].", f.host);
    else if (f.origins > 1)
        snprintf(msg, len, "The request has %d Origin headers; one is allowed.", f.origins);
    else
        return API_OK;
    return API_ERR_BAD_HEADER;
}

/* ---- Host ---- */

enum { SCOPE_UNKNOWN = 0, SCOPE_LOOPBACK, SCOPE_ANY, SCOPE_ONE };

/* An IPv4 address as 16 bytes: ::ffff:a.b.c.d, as a dual-stack socket sees it. */
static void v4_16(const void *in_addr4, unsigned char out[16])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, in_addr4, 4);
}

/* A socket address as 16 bytes; -1 when it is neither IPv4 nor IPv6. */
static int addr16(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        v4_16(&((const struct sockaddr_in *)sa)->sin_addr, out);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static int is_mapped(const unsigned char a[16])
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return !memcmp(a, prefix, 12);
}

static int is_loopback16(const unsigned char a[16])
{
    static const unsigned char one[16] = {[15] = 1};
    return (is_mapped(a) && a[12] == 127) || !memcmp(a, one, 16);
}

static int is_any16(const unsigned char a[16])
{
    static const unsigned char zero[16] = {0};
    static const unsigned char mapped_zero[16] = {[10] = 0xff, [11] = 0xff};
    return !memcmp(a, zero, 16) || !memcmp(a, mapped_zero, 16);
}

/* What the server listens on, read once from MHD's listening socket. */
static int listen_scope(srv_req *r)
{
    srv_http *h = r->h;
    if (h->listen_scope != SCOPE_UNKNOWN)
        return h->listen_scope;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_DAEMON);
    const union MHD_DaemonInfo *di =
        ci ? MHD_get_daemon_info(ci->daemon, MHD_DAEMON_INFO_LISTEN_FD) : NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    unsigned char a[16];
    if (!di || di->listen_fd < 0 || getsockname(di->listen_fd, (struct sockaddr *)&ss, &sl) ||
        addr16((struct sockaddr *)&ss, a))
        return SCOPE_UNKNOWN; /* quiesced: the connection's own address still counts */
    h->listen_scope = is_any16(a) ? SCOPE_ANY : is_loopback16(a) ? SCOPE_LOOPBACK : SCOPE_ONE;
    return h->listen_scope;
}

/* The address the client reached: the listening address, or under 0.0.0.0 the interface's. */
static int local_addr(srv_req *r, unsigned char out[16])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&ss, &sl))
        return -1;
    return addr16((struct sockaddr *)&ss, out);
}

static int machine_has(const unsigned char a[16])
{
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list))
        return 0;
    int found = 0;
    unsigned char b[16];
    for (struct ifaddrs *i = list; i && !found; i = i->ifa_next)
        found = i->ifa_addr && !addr16(i->ifa_addr, b) && !memcmp(a, b, 16);
    freeifaddrs(list);
    return found;
}

static int listed(const srv_strlist *l, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < l->n; i++) {
        const char *e = l->v[i];
        size_t m = strlen(e);
        if (!strcmp(e, "*") || !strcasecmp(e, name))
            return 1;
        /* ".example.com": example.com and every name under it. */
        if (e[0] == '.' && (!strcasecmp(e + 1, name) ||
                            (n > m && !strcasecmp(name + n - m, e))))
            return 1;
    }
    return 0;
}

static int host_allowed(srv_req *r, const char *name, int v6)
{
    const srv_options *o = r->h->cfg.opts;
    if (listed(&o->allowed_hosts, name))
        return 1;
    int scope = listen_scope(r);
    int local = scope == SCOPE_LOOPBACK || scope == SCOPE_ANY;
    unsigned char want[16], here[16];
    struct in_addr a4;
    int literal = 0;
    if (v6) {
        literal = inet_pton(AF_INET6, name, want) == 1;
    } else if (inet_pton(AF_INET, name, &a4) == 1) {
        v4_16(&a4, want);
        literal = 1;
    }
    if (!literal) {
        if (!strcasecmp(name, "localhost"))
            return local;
        char me[256];
        if (scope == SCOPE_ANY && !gethostname(me, sizeof me)) {
            me[sizeof me - 1] = '\0';
            return !strcasecmp(name, me);
        }
        return 0;
    }
    if (is_loopback16(want) && local)
        return 1;
    if (!local_addr(r, here) && !memcmp(want, here, 16))
        return 1;
    return scope == SCOPE_ANY && machine_has(want);
}

api_err srv_guard_host(srv_req *r, char *msg, size_t len)
{
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    char name[256];
    int v6;
    if (!host) /* HTTP/1.0 (srv_guard_framing refused it otherwise): nothing to check */
        return API_OK;
    if (split_host(host, name, sizeof name, &v6) == 0 && host_allowed(r, name, v6))
        return API_OK;
    snprintf(msg, len, "This server does not answer to the host \"%.80s\" (it may be named in "
             "--allowed-hosts).", host);
    return API_ERR_MISDIRECTED;
}

/* ---- Origin ---- */

/* The Origin a page of this server would send: its scheme and the Host the client used. */
static int same_origin(const char *origin, const char *host)
{
    const char *rest = !strncasecmp(origin, "http://", 7)    ? origin + 7
                       : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                             : NULL;
    return rest && host && !strcasecmp(rest, host);
}

api_err srv_guard_origin(srv_req *r, char *msg, size_t len)
{
    const srv_options *o = r->h->cfg.opts;
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    r->cors = 0;
    if (!origin)
        return API_OK;
    for (int i = 0; i < o->cors_origins.n && !r->cors; i++) {
        if (!strcmp(o->cors_origins.v[i], "*"))
            r->cors = SRV_CORS_ANY;
        else if (!strcasecmp(o->cors_origins.v[i], origin))
            r->cors = SRV_CORS_ORIGIN;
    }
    if (r->cors || same_origin(origin,
                               MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host")))
        return API_OK;
    /* A GET or HEAD changes nothing, and without Access-Control-Allow-Origin the page cannot
     * read the answer; what writes (POST, DELETE) or asks to (a preflight) is refused. */
    if (!strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"))
        return API_OK;
    snprintf(msg, len, "Web pages of the origin \"%.100s\" may not call this server (see "
             "--cors-origins).", origin);
    return API_ERR_ORIGIN_FORBIDDEN;
}

int srv_guard_is_preflight(srv_req *r)
{
    return !strcmp(r->method, "OPTIONS") &&
           MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin") &&
           MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                       "Access-Control-Request-Method");
}

void srv_guard_cors_headers(srv_req *r, struct MHD_Response *resp)
{
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!origin || !r->cors)
        return;
    if (r->cors == SRV_CORS_ANY) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    } else {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            "X-Request-Id, Server-Timing, Retry-After");
}

void srv_guard_preflight_headers(srv_req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", r->allow);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Accept, X-Request-Id");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
}
