/*
 * negotiate.c - the HTTP content negotiation of the contract: which Content-Types count as a
 * JSON body (415 otherwise) and which answer an Accept header asks for (406 when none fits).
 *
 * Accept is read as RFC 9110 section 12.5.1 says: comma-separated media ranges with an optional
 * q parameter; a type takes the q of the most specific range that matches it. A range whose q
 * is malformed is dropped (see weigh()).
 */
#include "api/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Length of a token (up to ';', ',' or whitespace). */
static size_t token_len(const char *p)
{
    size_t n = 0;
    while (p[n] && p[n] != ';' && p[n] != ',' && p[n] != ' ' && p[n] != '\t')
        n++;
    return n;
}

/*
 * Bodies whose media type is not JSON but that clients send JSON under: curl -d uses
 * application/x-www-form-urlencoded and a browser fetch() of a string uses text/plain (which
 * spares a CORS preflight). The body is parsed as JSON either way, and refused (400) if it is not.
 */
int api_content_type_is_json(const char *ct)
{
    if (!ct)
        return 0;
    const char *p = skip_ws(ct);
    if (!*p)
        return 0;
    size_t n = token_len(p);
    static const char *const ok[] = {"application/json", "application/x-www-form-urlencoded",
                                     "text/plain", NULL};
    int found = 0;
    for (int i = 0; ok[i]; i++)
        if (strlen(ok[i]) == n && strncasecmp(p, ok[i], n) == 0)
            found = 1;
    if (!found)
        return -1;
    /* Parameters: only charset matters, and it must be UTF-8 (RFC 8259 section 8.1). */
    p += n;
    while (*(p = skip_ws(p)) == ';') {
        p = skip_ws(p + 1);
        size_t k = 0;
        while (p[k] && p[k] != '=' && p[k] != ';')
            k++;
        int is_charset = k == 7 && strncasecmp(p, "charset", 7) == 0;
        p += k;
        if (*p != '=')
            continue;
        p++;
        int quoted = *p == '"';
        if (quoted)
            p++;
        size_t vlen = 0;
        while (p[vlen] && p[vlen] != ';' && p[vlen] != '"' && p[vlen] != ' ')
            vlen++;
        if (is_charset && !((vlen == 5 && strncasecmp(p, "utf-8", 5) == 0) ||
                            (vlen == 4 && strncasecmp(p, "utf8", 4) == 0)))
            return -1;
        p += vlen;
        if (quoted && *p == '"')
            p++;
        while (*p && *p != ';')
            p++;
    }
    return 0;
}

/* The answers a native request can get, as the Accept header weighs them. */
enum { C_JSON, C_SSE, C_PNG, C_JPEG, C_COUNT };
static const char *const cand_type[C_COUNT] = {"application/json", "text/event-stream",
                                               "image/png", "image/jpeg"};

typedef struct weight {
    double q;
    int spec; /* 0: no range matched, 1: any type, 2: "image" with any subtype, 3: exact */
} weight;

/*
 * A qvalue exactly as RFC 9110 section 12.4.2 writes it: "0" [ "." 0*3DIGIT ] or
 * "1" [ "." 0*3("0") ]. Returns the weight, or -1 when the text is anything else ("abc", "0.5x",
 * "2", "-1", "nan", "1e-1", "0.0001", a quoted value): strtod would read most of those, some as
 * a weight the client never wrote.
 */
static double parse_q(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    if (n == 1)
        return p[0] - '0';
    if (p[1] != '.' || n > 5)
        return -1;
    double q = p[0] - '0', scale = 0.1;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9' || (p[0] == '1' && p[i] != '0'))
            return -1;
        q += (p[i] - '0') * scale;
    }
    return q;
}

static void weigh(const char *accept, weight *w)
{
    for (int c = 0; c < C_COUNT; c++)
        w[c] = (weight){0, 0};
    const char *p = accept;
    while (*p) {
        p = skip_ws(p);
        size_t n = token_len(p);
        const char *range = p;
        double q = 1.0;
        int bad_q = 0;
        p += n;
        /* Parameters up to the next comma; only q is used. */
        while (*p && *p != ',') {
            p = skip_ws(p);
            if (*p == ';') {
                p = skip_ws(p + 1);
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                    size_t k = 0;
                    while (p[2 + k] && p[2 + k] != ';' && p[2 + k] != ',' && p[2 + k] != ' ' &&
                           p[2 + k] != '\t')
                        k++;
                    q = parse_q(p + 2, k);
                    bad_q |= q < 0;
                    p += 2 + k;
                    continue;
                }
            }
            while (*p && *p != ';' && *p != ',')
                p++;
        }
        if (*p == ',')
            p++;
        /*
         * A range whose q is not a qvalue is dropped, as if the client had not sent it. Taking
         * RFC 9110's default q=1 instead would give the range the highest preference when the
         * client plainly meant to lower it; dropping it never ranks a type above what the client
         * wrote. When every range is dropped nothing is acceptable, and the answer is 406.
         */
        if (n == 0 || bad_q)
            continue;
        const char *slash = memchr(range, '/', n);
        if (!slash)
            continue;
        size_t tlen = (size_t)(slash - range);
        for (int c = 0; c < C_COUNT; c++) {
            const char *t = cand_type[c];
            const char *ts = strchr(t, '/');
            int spec = 0;
            if (n == 3 && strncmp(range, "*/*", 3) == 0)
                spec = 1;
            else if ((size_t)(ts - t) == tlen && strncasecmp(range, t, tlen) == 0) {
                if (n == tlen + 2 && slash[1] == '*')
                    spec = 2;
                else if (strlen(t) == n && strncasecmp(range, t, n) == 0)
                    spec = 3;
            }
            if (spec > w[c].spec)
                w[c] = (weight){q, spec};
        }
    }
}

static int refuse(api_err *code, char *msg, size_t msglen, const char *text)
{
    if (code)
        *code = API_ERR_NOT_ACCEPTABLE;
    if (msg && msglen)
        snprintf(msg, msglen, "%s", text);
    return -1;
}

int api_accept_choose(const char *accept, api_generate_request *req, api_answer *out,
                      api_err *code, char *msg, size_t msglen)
{
    weight w[C_COUNT];
    weigh(accept && *skip_ws(accept) ? accept : "*/*", w);
    if (req->stream) {
        if (w[C_SSE].q <= 0)
            return refuse(code, msg, msglen, "\"stream\": true answers text/event-stream, which "
                          "the Accept header does not allow");
        *out = API_ANSWER_SSE;
        return 0;
    }
    /* The image type: the one the body named, else the better weighted (ties: the default). */
    int img = req->format == API_FORMAT_JPEG ? C_JPEG : C_PNG;
    if (!req->has_format) {
        int other = img == C_PNG ? C_JPEG : C_PNG;
        if (w[other].q > w[img].q || (w[other].q == w[img].q && w[other].spec > w[img].spec))
            img = other;
    }
    int image_wins = w[img].q > w[C_JSON].q ||
                     (w[img].q == w[C_JSON].q && w[img].q > 0 && w[img].spec > w[C_JSON].spec);
    if (image_wins && req->n > 1) {
        if (w[C_JSON].q > 0)
            image_wins = 0;
        else
            return refuse(code, msg, msglen, "an image answer holds one image: with \"n\" > 1 "
                          "the Accept header must allow application/json");
    }
    if (image_wins) {
        req->format = img == C_JPEG ? API_FORMAT_JPEG : API_FORMAT_PNG;
        *out = API_ANSWER_IMAGE;
        return 0;
    }
    if (w[C_JSON].q > 0) {
        *out = API_ANSWER_JSON;
        return 0;
    }
    if (req->has_format && w[img == C_PNG ? C_JPEG : C_PNG].q > 0)
        return refuse(code, msg, msglen, "the Accept header allows another image type than the "
                      "\"format\" the request names");
    return refuse(code, msg, msglen, "the Accept header allows none of application/json, "
                  "image/png, image/jpeg");
}
