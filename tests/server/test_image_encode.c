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
