/*
 * base64.c - RFC 4648 base64 (standard alphabet, '=' padding). Encoding sits on the answer path
 * of every generated image (a 1024x1024 PNG is megabytes), so it works three bytes at a time
 * with no branch per character.
 */
#include "api/base64.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t api_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

/*
 * Two output characters per 12 input bits: one look-up in a 4096-entry table of character
 * pairs instead of two in the alphabet, which about halves the time per byte. Built on first use;
 * the race of two threads building it at once is benign (both write the same bytes) but is
 * avoided anyway with pthread_once.
 */
static char pairs[4096][2];
static pthread_once_t pairs_once = PTHREAD_ONCE_INIT;

static void pairs_build(void)
{
    for (int i = 0; i < 4096; i++) {
        pairs[i][0] = alphabet[i >> 6];
        pairs[i][1] = alphabet[i & 63];
    }
}

size_t api_base64_encode(const uint8_t *in, size_t n, char *out)
{
    pthread_once(&pairs_once, pairs_build);
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        memcpy(o, pairs[v >> 12], 2);
        memcpy(o + 2, pairs[v & 0xfff], 2);
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[(v >> 12) & 63];
        o[2] = '=';
        o[3] = '=';
        o += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[(v >> 12) & 63];
        o[2] = alphabet[(v >> 6) & 63];
        o[3] = '=';
        o += 4;
    }
    *o = '\0';
    return (size_t)(o - out);
}

char *api_base64_encode_alloc(const uint8_t *in, size_t n, size_t *len)
{
    char *out = malloc(api_base64_encoded_len(n) + 1);
    if (!out)
        return NULL;
    size_t l = api_base64_encode(in, n, out);
    if (len)
        *len = l;
    return out;
}

size_t api_base64_decoded_max(size_t n) { return n / 4 * 3; }

static int value_of(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int api_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int last = i + 4 == n;
        int pad = 0;
        if (last && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = value_of(in[i + k])) < 0)
                return -1;
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* The bits a padded group leaves over must be zero (RFC 4648 section 3.5, canonical). */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    if (out_len)
        *out_len = o;
    return 0;
}
