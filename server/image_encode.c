/*
 * image_encode.c - PNG through libspng, JPEG through TurboJPEG, both into memory.
 *
 * Both libraries hand back buffers from their own allocators (spng: malloc; TurboJPEG: tjAlloc),
 * so the JPEG bytes are copied into a malloc'd buffer: callers free every result with free().
 */
#include "server/image_encode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spng.h>
#include <turbojpeg.h>

static int fail(char *errbuf, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *errbuf, size_t errlen, int code, const char *fmt, ...)
{
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *srv_image_format_name(srv_image_format fmt)
{
    switch (fmt) {
    case SRV_IMAGE_PNG:
        return "png";
    case SRV_IMAGE_JPEG:
        return "jpeg";
    }
    return "unknown";
}

int srv_image_format_from_path(const char *path, srv_image_format *fmt)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/'))
        return -EINVAL;
    if (strcasecmp(dot, ".png") == 0) {
        *fmt = SRV_IMAGE_PNG;
        return 0;
    }
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0) {
        *fmt = SRV_IMAGE_JPEG;
        return 0;
    }
    return -EINVAL;
}

static int encode_png(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *out_len,
                      char *errbuf, size_t errlen)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx)
        return fail(errbuf, errlen, -ENOMEM, "png: cannot make an encoder context");
    int rc = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {
        .width = (uint32_t)w,
        .height = (uint32_t)h,
        .bit_depth = 8,
        .color_type = SPNG_COLOR_TYPE_TRUECOLOR,
    };
    if (rc == 0)
        rc = spng_set_ihdr(ctx, &ihdr);
    if (rc == 0)
        rc = spng_encode_image(ctx, rgb, (size_t)w * (size_t)h * 3, SPNG_FMT_PNG,
                               SPNG_ENCODE_FINALIZE);
    if (rc != 0) {
        spng_ctx_free(ctx);
        return fail(errbuf, errlen, rc == SPNG_EMEM ? -ENOMEM : -EIO, "png: %s",
                    spng_strerror(rc));
    }
    size_t len = 0;
    void *buf = spng_get_png_buffer(ctx, &len, &rc);
    spng_ctx_free(ctx);
    if (!buf || rc != 0) {
        free(buf);
        return fail(errbuf, errlen, -EIO, "png: %s", spng_strerror(rc ? rc : SPNG_EINTERNAL));
    }
    *out = buf;
    *out_len = len;
    return 0;
}

static int encode_jpeg(const uint8_t *rgb, int w, int h, int quality, uint8_t **out,
                       size_t *out_len, char *errbuf, size_t errlen)
{
    tjhandle tj = tjInitCompress();
    if (!tj)
        return fail(errbuf, errlen, -ENOMEM, "jpeg: %s", tjGetErrorStr2(NULL));
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    /* tjCompress2 takes a non-const source pointer but does not write through it. */
    if (tjCompress2(tj, (unsigned char *)(uintptr_t)rgb, w, 0, h, TJPF_RGB, &jbuf, &jlen,
                    TJSAMP_420, quality, TJFLAG_ACCURATEDCT) != 0) {
        int code = fail(errbuf, errlen, -EIO, "jpeg: %s", tjGetErrorStr2(tj));
        tjFree(jbuf);
        tjDestroy(tj);
        return code;
    }
    tjDestroy(tj);
    uint8_t *copy = malloc(jlen ? jlen : 1);
    if (!copy) {
        tjFree(jbuf);
        return fail(errbuf, errlen, -ENOMEM, "jpeg: out of memory (%lu bytes)", jlen);
    }
    memcpy(copy, jbuf, jlen);
    tjFree(jbuf);
    *out = copy;
    *out_len = jlen;
    return 0;
}

int srv_image_encode(const uint8_t *rgb, int w, int h, srv_image_format fmt, int quality,
                     uint8_t **out, size_t *out_len, char *errbuf, size_t errlen)
{
    if (errbuf && errlen > 0)
        errbuf[0] = '\0';
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!rgb || !out || !out_len)
        return fail(errbuf, errlen, -EINVAL, "image encode: NULL argument");
    if (w < 1 || h < 1 || w > SRV_IMAGE_MAX_SIDE || h > SRV_IMAGE_MAX_SIDE)
        return fail(errbuf, errlen, -EINVAL, "image encode: size %dx%d out of range [1, %d]", w,
                    h, SRV_IMAGE_MAX_SIDE);
    switch (fmt) {
    case SRV_IMAGE_PNG:
        return encode_png(rgb, w, h, out, out_len, errbuf, errlen);
    case SRV_IMAGE_JPEG:
        if (quality < 1 || quality > 100)
            return fail(errbuf, errlen, -EINVAL, "jpeg: quality %d out of range [1, 100]",
                        quality);
        return encode_jpeg(rgb, w, h, quality, out, out_len, errbuf, errlen);
    }
    return fail(errbuf, errlen, -EINVAL, "image encode: unknown format %d", (int)fmt);
}
