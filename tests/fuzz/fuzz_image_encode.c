/*
 * fuzz_image_encode.c - libFuzzer target for the image encoders (server/image_encode.c): PNG
 * through libspng and JPEG through TurboJPEG, with width, height, format, quality and pixels
 * taken from the input.
 *
 * Input: width and height as little-endian uint16, a format byte (its low bits modulo 3: 0 PNG,
 * 1 JPEG, 2 a value outside the enum; bit 7 negates the width, bit 6 the height, so zero,
 * negative and oversized sides all come up), a quality byte (0..255, so out-of-range qualities
 * come up), then pixel bytes, repeated to fill w * h * 3.
 * The pixels end exactly at a PROT_NONE page: the encoders are system libraries without ASan
 * instrumentation, and the guard page is what catches a read past the image there.
 * Checked on every input: a size outside [1, SRV_IMAGE_MAX_SIDE], a JPEG quality outside
 * [1, 100] or an unknown format is -EINVAL with a message and no output; anything else encodes,
 * and the bytes decode (spng, TurboJPEG) to an image of the same width and height; a PNG gives
 * back exactly the input pixels. Each valid image is encoded a second time with metadata (the
 * first pixel bytes as the texts, valid UTF-8 or not), with the same checks.
 * Seeds: tests/fuzz/corpus/image_encode/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <spng.h>
#include <turbojpeg.h>

#include "server/image_encode.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Images of at most this many pixels are encoded, to keep an input to a few milliseconds. */
#define MAX_PIXELS (1 << 18)

/* n bytes that end at a PROT_NONE page; *base and *maplen for munmap. */
static uint8_t *guarded(size_t n, void **base, size_t *maplen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (n + page - 1) / page * page;
    *maplen = body + page;
    uint8_t *m = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(m != MAP_FAILED);
    FUZZ_CHECK(mprotect(m + body, page, PROT_NONE) == 0);
    *base = m;
    return m + body - n;
}

static void check_png(const uint8_t *png, size_t len, const uint8_t *rgb, int w, int h)
{
    spng_ctx *ctx = spng_ctx_new(0);
    FUZZ_CHECK(ctx != NULL);
    FUZZ_CHECK(spng_set_png_buffer(ctx, png, len) == 0);
    struct spng_ihdr ihdr;
    FUZZ_CHECK(spng_get_ihdr(ctx, &ihdr) == 0);
    FUZZ_CHECK(ihdr.width == (uint32_t)w && ihdr.height == (uint32_t)h);
    FUZZ_CHECK(ihdr.bit_depth == 8 && ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR);
    size_t n = 0;
    FUZZ_CHECK(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n) == 0);
    FUZZ_CHECK(n == (size_t)w * (size_t)h * 3);
    uint8_t *back = malloc(n);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(spng_decode_image(ctx, back, n, SPNG_FMT_RGB8, 0) == 0);
    FUZZ_CHECK(memcmp(back, rgb, n) == 0);
    free(back);
    spng_ctx_free(ctx);
}

static void check_jpeg(const uint8_t *jpg, size_t len, int w, int h)
{
    tjhandle tj = tjInitDecompress();
    FUZZ_CHECK(tj != NULL);
    int jw = 0, jh = 0, sub = -1, cs = -1;
    FUZZ_CHECK(tjDecompressHeader3(tj, jpg, (unsigned long)len, &jw, &jh, &sub, &cs) == 0);
    FUZZ_CHECK(jw == w && jh == h);
    FUZZ_CHECK(sub == TJSAMP_420 && cs == TJCS_YCbCr);
    uint8_t *back = malloc((size_t)w * (size_t)h * 3);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(tjDecompress2(tj, jpg, (unsigned long)len, back, w, 0, h, TJPF_RGB, 0) == 0);
    free(back);
    tjDestroy(tj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    int w = data[0] | data[1] << 8;
    int h = data[2] | data[3] << 8;
    if (data[4] & 0x80)
        w = -w;
    if (data[4] & 0x40)
        h = -h;
    int fmt_byte = (data[4] & 0x3F) % 3;
    srv_image_format fmt = fmt_byte == 0 ? SRV_IMAGE_PNG
                         : fmt_byte == 1 ? SRV_IMAGE_JPEG
                                         : (srv_image_format)(7 + data[4]);
    int quality = data[5];
    const uint8_t *px = data + 6;
    size_t npx = size - 6;

    int bad_size = w < 1 || h < 1 || w > SRV_IMAGE_MAX_SIDE || h > SRV_IMAGE_MAX_SIDE;
    int bad = bad_size || fmt_byte == 2 || (fmt == SRV_IMAGE_JPEG && (quality < 1 || quality > 100));
    if (!bad && (int64_t)w * h > MAX_PIXELS)
        return 0;
    /* A refused size must not be read: give it a single guarded pixel. */
    size_t n = bad ? 3 : (size_t)w * (size_t)h * 3;
    void *base;
    size_t maplen;
    uint8_t *rgb = guarded(n, &base, &maplen);
    for (size_t i = 0; i < n; i++)
        rgb[i] = npx ? px[i % npx] : (uint8_t)i;

    uint8_t *out = (uint8_t *)1;
    size_t out_len = 1;
    char msg[256];
    int rc = srv_image_encode(rgb, w, h, fmt, quality, &out, &out_len, msg, sizeof msg);
    if (bad) {
        FUZZ_CHECK(rc == -EINVAL && out == NULL && out_len == 0 && msg[0]);
    } else {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(out != NULL && out_len > 0);
        if (fmt == SRV_IMAGE_PNG)
            check_png(out, out_len, rgb, w, h);
        else
            check_jpeg(out, out_len, w, h);
        free(out);

        /* Again with metadata: the pixel bytes (up to 300, cut at a NUL) as both texts, which
         * need not be valid UTF-8. It still encodes and decodes to the same size. */
        char text[301];
        size_t tn = npx < 300 ? npx : 300;
        memcpy(text, px, tn);
        text[tn] = '\0';
        srv_image_meta meta = {.parameters = text, .json = text};
        out = NULL;
        rc = srv_image_encode_meta(rgb, w, h, fmt, quality, &meta, &out, &out_len, msg,
                                   sizeof msg);
        FUZZ_CHECK(rc == 0 && out != NULL && out_len > 0);
        if (fmt == SRV_IMAGE_PNG)
            check_png(out, out_len, rgb, w, h);
        else
            check_jpeg(out, out_len, w, h);
        free(out);
    }
    FUZZ_CHECK(strcmp(srv_image_format_name(SRV_IMAGE_PNG), "png") == 0);
    munmap(base, maplen);
    return 0;
}
