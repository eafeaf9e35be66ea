/*
 * image_encode.c - PNG through libspng, JPEG through TurboJPEG, both into memory.
 *
 * Both libraries hand back buffers from their own allocators (spng: malloc; TurboJPEG: tjAlloc),
 * so the JPEG bytes are copied into a malloc'd buffer: callers free every result with free().
 * Metadata (srv_image_meta): libspng writes the PNG text chunks; the JPEG's EXIF segment is
 * written here by hand and spliced in after the SOI marker TurboJPEG starts with.
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

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* The text chunks of meta into t (at most 2); returns how many. */
static uint32_t png_texts(const srv_image_meta *meta, struct spng_text t[2])
{
    uint32_t n = 0;
    static char empty[] = "";
    if (!meta)
        return 0;
    /* An empty text is no text (libspng refuses a chunk of length 0). */
    if (meta->parameters && meta->parameters[0]) {
        /* tEXt is Latin-1: text that is not ASCII goes into an iTXt chunk (UTF-8), as Pillow
         * does for A1111, so that readers decode it right. */
        t[n] = (struct spng_text){.keyword = "parameters",
                                  .type = is_ascii(meta->parameters) ? SPNG_TEXT : SPNG_ITXT,
                                  .length = strlen(meta->parameters),
                                  .text = (char *)(uintptr_t)meta->parameters,
                                  .language_tag = empty, .translated_keyword = empty};
        n++;
    }
    if (meta->json && meta->json[0]) {
        t[n] = (struct spng_text){.keyword = "tttd", .type = SPNG_ITXT,
                                  .length = strlen(meta->json),
                                  .text = (char *)(uintptr_t)meta->json,
                                  .language_tag = empty, .translated_keyword = empty};
        n++;
    }
    return n;
}

static int encode_png(const uint8_t *rgb, int w, int h, const srv_image_meta *meta,
                      uint8_t **out, size_t *out_len, char *errbuf, size_t errlen)
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
    struct spng_text texts[2];
    uint32_t ntext = png_texts(meta, texts);
    if (rc == 0 && ntext > 0)
        rc = spng_set_text(ctx, texts, ntext);
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

/* The largest APP1 segment: its 2-byte length counts itself. */
#define APP1_MAX 65535
/* Bytes of the segment before the comment's text: length (2), "Exif\0\0" (6), the TIFF header
 * (8), IFD0 with one entry (2 + 12 + 4), the Exif IFD with one entry (2 + 12 + 4), the 8-byte
 * character code of the UserComment. */
#define EXIF_HEAD (2 + 6 + 8 + 18 + 18 + 8)

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One code point of valid UTF-8 at *s; advances *s. */
static uint32_t utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = p[0];
    int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (extra)
        c &= 0x3Fu >> extra;
    for (int i = 1; i <= extra && p[i]; i++)
        c = (c << 6) | (p[i] & 0x3Fu);
    for (*s = p + 1; extra-- > 0 && **s; (*s)++)
        ;
    return c;
}

/*
 * The APP1 segment (from its FF E1 marker) holding text as EXIF UserComment, into a new buffer.
 * Big-endian TIFF ("MM"): IFD0 at 8 holds ExifIFDPointer (0x8769) -> the Exif IFD at 26 holds
 * UserComment (0x9286, UNDEFINED) whose bytes start at 44.
 */
static uint8_t *exif_segment(const char *text, size_t *len)
{
    const size_t room = APP1_MAX - EXIF_HEAD;
    int ascii = is_ascii(text);
    uint8_t *seg = malloc(2 + APP1_MAX);
    if (!seg)
        return NULL;
    uint8_t *body = seg + 2 + EXIF_HEAD;
    size_t n = 0;
    if (ascii) {
        n = strlen(text);
        if (n > room)
            n = room;
        memcpy(body, text, n);
    } else {
        const unsigned char *p = (const unsigned char *)text;
        while (*p) {
            uint32_t c = utf8_next(&p);
            size_t need = c >= 0x10000 ? 4 : 2;
            if (n + need > room)
                break; /* cut at a character, never inside a surrogate pair */
            if (c >= 0x10000) {
                c -= 0x10000;
                put16(body + n, 0xD800 | (c >> 10));
                put16(body + n + 2, 0xDC00 | (c & 0x3FF));
            } else {
                put16(body + n, c);
            }
            n += need;
        }
    }
    uint8_t *q = seg;
    q[0] = 0xFF, q[1] = 0xE1;
    put16(q + 2, (unsigned)(EXIF_HEAD + n));
    memcpy(q + 4, "Exif\0\0", 6);
    uint8_t *tiff = q + 10;
    memcpy(tiff, "MM\0\x2A", 4);
    put32(tiff + 4, 8);
    put16(tiff + 8, 1);           /* IFD0: one entry */
    put16(tiff + 10, 0x8769);     /* ExifIFDPointer */
    put16(tiff + 12, 4);          /* LONG */
    put32(tiff + 14, 1);
    put32(tiff + 18, 26);         /* the Exif IFD's offset */
    put32(tiff + 22, 0);          /* no next IFD */
    put16(tiff + 26, 1);          /* Exif IFD: one entry */
    put16(tiff + 28, 0x9286);     /* UserComment */
    put16(tiff + 30, 7);          /* UNDEFINED */
    put32(tiff + 32, (uint32_t)(8 + n));
    put32(tiff + 36, 44);         /* its bytes' offset */
    put32(tiff + 40, 0);
    memcpy(tiff + 44, ascii ? "ASCII\0\0\0" : "UNICODE\0", 8);
    *len = 2 + EXIF_HEAD + n;
    return seg;
}

static int encode_jpeg(const uint8_t *rgb, int w, int h, int quality, const srv_image_meta *meta,
                       uint8_t **out, size_t *out_len, char *errbuf, size_t errlen)
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
    size_t seg_len = 0;
    uint8_t *seg = NULL;
    if (meta && meta->parameters && meta->parameters[0]) {
        seg = exif_segment(meta->parameters, &seg_len);
        if (!seg) {
            tjFree(jbuf);
            return fail(errbuf, errlen, -ENOMEM, "jpeg: out of memory for the EXIF segment");
        }
    }
    if (jlen < 2) {
        free(seg), tjFree(jbuf);
        return fail(errbuf, errlen, -EIO, "jpeg: the encoder wrote %lu bytes", jlen);
    }
    uint8_t *copy = malloc(jlen + seg_len);
    if (!copy) {
        free(seg), tjFree(jbuf);
        return fail(errbuf, errlen, -ENOMEM, "jpeg: out of memory (%lu bytes)", jlen);
    }
    /* SOI, then the APP1 segment, then the rest (JFIF APP0 onwards). */
    memcpy(copy, jbuf, 2);
    if (seg_len)
        memcpy(copy + 2, seg, seg_len);
    memcpy(copy + 2 + seg_len, jbuf + 2, jlen - 2);
    free(seg);
    tjFree(jbuf);
    *out = copy;
    *out_len = jlen + seg_len;
    return 0;
}

int srv_image_encode(const uint8_t *rgb, int w, int h, srv_image_format fmt, int quality,
                     uint8_t **out, size_t *out_len, char *errbuf, size_t errlen)
{
    return srv_image_encode_meta(rgb, w, h, fmt, quality, NULL, out, out_len, errbuf, errlen);
}

int srv_image_encode_meta(const uint8_t *rgb, int w, int h, srv_image_format fmt, int quality,
                          const srv_image_meta *meta, uint8_t **out, size_t *out_len,
                          char *errbuf, size_t errlen)
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
        return encode_png(rgb, w, h, meta, out, out_len, errbuf, errlen);
    case SRV_IMAGE_JPEG:
        if (quality < 1 || quality > 100)
            return fail(errbuf, errlen, -EINVAL, "jpeg: quality %d out of range [1, 100]",
                        quality);
        return encode_jpeg(rgb, w, h, quality, meta, out, out_len, errbuf, errlen);
    }
    return fail(errbuf, errlen, -EINVAL, "image encode: unknown format %d", (int)fmt);
}
