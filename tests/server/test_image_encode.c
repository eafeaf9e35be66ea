/*
 * test_image_encode.c - srv_image_encode: PNG round trips bit for bit through libspng's decoder,
 * JPEG decodes (TurboJPEG) to the right size within 30 dB PSNR of a smooth image at quality 90
 * and gets smaller with lower quality, and bad arguments are refused with a message.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>
#include <turbojpeg.h>

#include "server/image_encode.h"
#include "tests/common/test_util.h"

/* A smooth gradient with a soft diagonal band (what JPEG should keep well). */
static uint8_t *gradient(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    cr_assert(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(255.0 * x / (w - 1));
            q[1] = (uint8_t)(255.0 * y / (h - 1));
            q[2] = (uint8_t)(127.5 + 127.0 * sin((x + y) * 0.05));
        }
    return p;
}

/* Noise, so that a PNG round trip that filters or compresses wrongly cannot pass by luck. */
static uint8_t *noise(int w, int h, uint32_t seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    cr_assert(p);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
    return p;
}

static uint8_t *png_decode(const uint8_t *buf, size_t len, int *w, int *h)
{
    spng_ctx *ctx = spng_ctx_new(0);
    cr_assert(ctx);
    cr_assert_eq(spng_set_png_buffer(ctx, buf, len), 0);
    struct spng_ihdr ihdr;
    cr_assert_eq(spng_get_ihdr(ctx, &ihdr), 0);
    cr_assert_eq(ihdr.bit_depth, 8);
    cr_assert_eq(ihdr.color_type, SPNG_COLOR_TYPE_TRUECOLOR);
    size_t n = 0;
    cr_assert_eq(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n), 0);
    uint8_t *img = malloc(n);
    cr_assert(img);
    cr_assert_eq(spng_decode_image(ctx, img, n, SPNG_FMT_RGB8, 0), 0);
    spng_ctx_free(ctx);
    *w = (int)ihdr.width;
    *h = (int)ihdr.height;
    return img;
}

static uint8_t *jpeg_decode(const uint8_t *buf, size_t len, int *w, int *h, int *subsamp)
{
    tjhandle tj = tjInitDecompress();
    cr_assert(tj);
    int cs;
    cr_assert_eq(tjDecompressHeader3(tj, buf, len, w, h, subsamp, &cs), 0, "%s",
                 tjGetErrorStr2(tj));
    uint8_t *img = malloc((size_t)*w * *h * 3);
    cr_assert(img);
    cr_assert_eq(tjDecompress2(tj, buf, len, img, *w, 0, *h, TJPF_RGB, TJFLAG_ACCURATEDCT), 0,
                 "%s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    return img;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        se += d * d;
    }
    return se == 0 ? INFINITY : 10.0 * log10(255.0 * 255.0 / (se / n));
}

Test(image_encode, png_round_trip_is_exact)
{
    const int sizes[][2] = {{1, 1}, {7, 3}, {64, 48}, {333, 17}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        /* Odd rows of the table are >= 2 x 2: gradient() divides by w - 1 and h - 1. */
        uint8_t *img = s % 2 ? gradient(w, h) : noise(w, h, 17u + (uint32_t)s);
        uint8_t *png = NULL;
        size_t len = 0;
        char msg[256];
        cr_assert_eq(srv_image_encode(img, w, h, SRV_IMAGE_PNG, 0, &png, &len, msg, sizeof msg),
                     0, "%s", msg);
        cr_assert(png && len > 8);
        cr_assert_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
        int dw, dh;
        uint8_t *back = png_decode(png, len, &dw, &dh);
        cr_assert_eq(dw, w);
        cr_assert_eq(dh, h);
        cr_assert_eq(memcmp(back, img, (size_t)w * h * 3), 0, "%dx%d differs", w, h);
        free(back), free(png), free(img);
    }
}

Test(image_encode, jpeg_quality_90_keeps_a_smooth_image)
{
    int w = 96, h = 64;
    uint8_t *img = gradient(w, h);
    uint8_t *jpg = NULL;
    size_t len = 0;
    char msg[256];
    cr_assert_eq(srv_image_encode(img, w, h, SRV_IMAGE_JPEG, 90, &jpg, &len, msg, sizeof msg), 0,
                 "%s", msg);
    cr_assert(len > 2 && jpg[0] == 0xFF && jpg[1] == 0xD8, "no SOI marker");
    int dw, dh, sub;
    uint8_t *back = jpeg_decode(jpg, len, &dw, &dh, &sub);
    cr_assert_eq(dw, w);
    cr_assert_eq(dh, h);
    cr_assert_eq(sub, TJSAMP_420);
    double p = psnr(img, back, (size_t)w * h * 3);
    cr_assert_gt(p, 30.0, "PSNR %.2f dB", p);
    free(back);

    /* Lower quality, fewer bytes (and still a valid image). */
    uint8_t *low = NULL;
    size_t low_len = 0;
    cr_assert_eq(srv_image_encode(img, w, h, SRV_IMAGE_JPEG, 10, &low, &low_len, msg, sizeof msg),
                 0, "%s", msg);
    cr_assert_lt(low_len, len);
    back = jpeg_decode(low, low_len, &dw, &dh, &sub);
    cr_assert_eq(dw, w);
    free(back), free(low), free(jpg), free(img);
}

Test(image_encode, odd_sizes_encode_as_jpeg)
{
    /* 4:2:0 on odd sizes: the encoder pads the MCUs, the decoded size is the true one. */
    uint8_t *img = noise(13, 7, 5);
    uint8_t *jpg = NULL;
    size_t len = 0;
    cr_assert_eq(srv_image_encode(img, 13, 7, SRV_IMAGE_JPEG, 100, &jpg, &len, NULL, 0), 0);
    int dw, dh, sub;
    uint8_t *back = jpeg_decode(jpg, len, &dw, &dh, &sub);
    cr_assert_eq(dw, 13);
    cr_assert_eq(dh, 7);
    free(back), free(jpg), free(img);
}

Test(image_encode, bad_arguments_are_refused)
{
    uint8_t px[12] = {0};
    uint8_t *out = (uint8_t *)1;
    size_t len = 99;
    char msg[256];
    cr_assert_eq(srv_image_encode(px, 0, 2, SRV_IMAGE_PNG, 0, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert_null(out);
    cr_assert_eq(len, 0);
    cr_assert(strstr(msg, "0x2 out of range"), "%s", msg);
    cr_assert_eq(srv_image_encode(px, 2, 0, SRV_IMAGE_JPEG, 90, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert_eq(srv_image_encode(px, -1, 2, SRV_IMAGE_PNG, 0, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert_eq(srv_image_encode(px, SRV_IMAGE_MAX_SIDE + 1, 1, SRV_IMAGE_PNG, 0, &out, &len,
                                  msg, sizeof msg),
                 -EINVAL);
    cr_assert_eq(srv_image_encode(px, 2, 2, SRV_IMAGE_JPEG, 0, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert(strstr(msg, "quality 0 out of range [1, 100]"), "%s", msg);
    cr_assert_eq(srv_image_encode(px, 2, 2, SRV_IMAGE_JPEG, 101, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert_eq(srv_image_encode(px, 2, 2, (srv_image_format)7, 90, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert(strstr(msg, "unknown format"), "%s", msg);
    cr_assert_eq(srv_image_encode(NULL, 2, 2, SRV_IMAGE_PNG, 0, &out, &len, msg, sizeof msg),
                 -EINVAL);
    cr_assert_eq(srv_image_encode(px, 2, 2, SRV_IMAGE_PNG, 0, NULL, &len, msg, sizeof msg),
                 -EINVAL);
    /* Quality is not looked at for PNG. */
    cr_assert_eq(srv_image_encode(px, 2, 2, SRV_IMAGE_PNG, 0, &out, &len, NULL, 0), 0);
    free(out);
}

Test(image_encode, format_from_path)
{
    srv_image_format f = SRV_IMAGE_JPEG;
    cr_assert_eq(srv_image_format_from_path("out.png", &f), 0);
    cr_assert_eq(f, SRV_IMAGE_PNG);
    cr_assert_eq(srv_image_format_from_path("/tmp/a.b/OUT.JPG", &f), 0);
    cr_assert_eq(f, SRV_IMAGE_JPEG);
    cr_assert_eq(srv_image_format_from_path("x.jpeg", &f), 0);
    cr_assert_eq(f, SRV_IMAGE_JPEG);
    cr_assert_eq(srv_image_format_from_path("x.webp", &f), -EINVAL);
    cr_assert_eq(srv_image_format_from_path("dir.png/x", &f), -EINVAL);
    cr_assert_eq(srv_image_format_from_path("png", &f), -EINVAL);
    cr_assert_eq(srv_image_format_from_path(NULL, &f), -EINVAL);
    cr_assert_str_eq(srv_image_format_name(SRV_IMAGE_PNG), "png");
    cr_assert_str_eq(srv_image_format_name(SRV_IMAGE_JPEG), "jpeg");
}

/* ---- metadata (issue 15) ---- */

static const char *const INFO = "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 4, Sampler: "
                                "Euler, CFG scale: 4.5, Seed: 42, Size: 32x16, Model: tiny";

Test(image_encode, png_carries_parameters_and_tttd_json)
{
    uint8_t *img = noise(32, 16, 3);
    const char *json = "{\"prompt\":\"a lighthouse at dusk\",\"seed\":42}";
    srv_image_meta meta = {.parameters = INFO, .json = json};
    uint8_t *png = NULL;
    size_t len = 0;
    char msg[256];
    cr_assert_eq(srv_image_encode_meta(img, 32, 16, SRV_IMAGE_PNG, 0, &meta, &png, &len, msg,
                                       sizeof msg), 0, "%s", msg);
    int type = 0;
    char *p = tu_png_text(png, len, "parameters", &type);
    cr_assert_str_eq(p, INFO);
    cr_assert_eq(type, SPNG_TEXT);
    char *j = tu_png_text(png, len, "tttd", &type);
    cr_assert_str_eq(j, json);
    cr_assert_eq(type, SPNG_ITXT);
    /* The pixels are still exact. */
    int dw, dh;
    uint8_t *back = png_decode(png, len, &dw, &dh);
    cr_assert_eq(memcmp(back, img, 32 * 16 * 3), 0);
    free(back), free(p), free(j), free(png);

    /* Not ASCII: "parameters" goes into an iTXt chunk, UTF-8 kept. */
    meta = (srv_image_meta){.parameters = "caf\xc3\xa9 \xe2\x98\x95\nSteps: 1"};
    cr_assert_eq(srv_image_encode_meta(img, 32, 16, SRV_IMAGE_PNG, 0, &meta, &png, &len, msg,
                                       sizeof msg), 0, "%s", msg);
    p = tu_png_text(png, len, "parameters", &type);
    cr_assert_str_eq(p, meta.parameters);
    cr_assert_eq(type, SPNG_ITXT);
    cr_assert_null(tu_png_text(png, len, "tttd", &type));
    free(p), free(png);

    /* No metadata: no text chunk at all. */
    cr_assert_eq(srv_image_encode(img, 32, 16, SRV_IMAGE_PNG, 0, &png, &len, msg, sizeof msg), 0);
    cr_assert_null(tu_png_text(png, len, "parameters", &type));
    free(png), free(img);
}

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The EXIF UserComment of a JPEG, parsed by hand: the APP1 "Exif" segment right after SOI, its
 * big-endian TIFF IFD0 -> ExifIFDPointer -> UserComment. Returns a pointer into jpg (NULL when
 * there is no APP1), the comment's length (with its 8-byte code) in *n.
 */
static const uint8_t *jpeg_user_comment(const uint8_t *jpg, size_t len, size_t *n)
{
    cr_assert(len > 4 && jpg[0] == 0xFF && jpg[1] == 0xD8);
    if (jpg[2] != 0xFF || jpg[3] != 0xE1)
        return NULL;
    size_t seg = be16(jpg + 4);
    cr_assert(4 + seg <= len);
    cr_assert_eq(memcmp(jpg + 6, "Exif\0\0", 6), 0);
    const uint8_t *t = jpg + 12;
    size_t tlen = seg - 8;
    cr_assert_eq(memcmp(t, "MM\0\x2A", 4), 0);
    uint32_t ifd0 = be32(t + 4);
    cr_assert(ifd0 + 18 <= tlen);
    uint32_t exif = 0;
    for (unsigned i = 0; i < be16(t + ifd0); i++) {
        const uint8_t *e = t + ifd0 + 2 + 12 * i;
        if (be16(e) == 0x8769)
            exif = be32(e + 8);
    }
    cr_assert(exif && exif + 18 <= tlen, "no Exif IFD");
    for (unsigned i = 0; i < be16(t + exif); i++) {
        const uint8_t *e = t + exif + 2 + 12 * i;
        if (be16(e) == 0x9286) {
            cr_assert_eq(be16(e + 2), 7);
            *n = be32(e + 4);
            cr_assert(be32(e + 8) + *n <= tlen);
            return t + be32(e + 8);
        }
    }
    cr_assert_fail("no UserComment");
    return NULL;
}

Test(image_encode, jpeg_carries_parameters_as_exif_user_comment)
{
    uint8_t *img = gradient(32, 16);
    srv_image_meta meta = {.parameters = INFO, .json = "{}"};
    uint8_t *jpg = NULL;
    size_t len = 0, n = 0;
    char msg[256];
    cr_assert_eq(srv_image_encode_meta(img, 32, 16, SRV_IMAGE_JPEG, 90, &meta, &jpg, &len, msg,
                                       sizeof msg), 0, "%s", msg);
    const uint8_t *c = jpeg_user_comment(jpg, len, &n);
    cr_assert(c);
    cr_assert_eq(n, 8 + strlen(INFO));
    cr_assert_eq(memcmp(c, "ASCII\0\0\0", 8), 0);
    cr_assert_eq(memcmp(c + 8, INFO, strlen(INFO)), 0);
    /* TurboJPEG still decodes it. */
    int dw, dh, sub;
    uint8_t *back = jpeg_decode(jpg, len, &dw, &dh, &sub);
    cr_assert_eq(dw, 32);
    free(back), free(jpg);

    /* Not ASCII: UNICODE, UTF-16 big-endian (a surrogate pair for U+1F5FC). */
    meta.parameters = "\xc3\xa9\xf0\x9f\x97\xbc";
    cr_assert_eq(srv_image_encode_meta(img, 32, 16, SRV_IMAGE_JPEG, 90, &meta, &jpg, &len, msg,
                                       sizeof msg), 0, "%s", msg);
    c = jpeg_user_comment(jpg, len, &n);
    cr_assert_eq(n, 8 + 6);
    cr_assert_eq(memcmp(c, "UNICODE\0\x00\xe9\xd8\x3d\xdd\xfc", 14), 0);
    free(jpg);

    /* Longer than one segment holds: cut, still a valid JPEG. */
    char *big = malloc(70000);
    memset(big, 'a', 69999);
    big[69999] = '\0';
    meta.parameters = big;
    cr_assert_eq(srv_image_encode_meta(img, 32, 16, SRV_IMAGE_JPEG, 90, &meta, &jpg, &len, msg,
                                       sizeof msg), 0, "%s", msg);
    c = jpeg_user_comment(jpg, len, &n);
    cr_assert_eq(be16(jpg + 4), 65535);
    back = jpeg_decode(jpg, len, &dw, &dh, &sub);
    free(back), free(jpg), free(big);

    /* No metadata: no APP1. */
    cr_assert_eq(srv_image_encode(img, 32, 16, SRV_IMAGE_JPEG, 90, &jpg, &len, msg, sizeof msg), 0);
    cr_assert_null(jpeg_user_comment(jpg, len, &n));
    free(jpg), free(img);
}
