/*
 * image_encode.h - 8-bit RGB images to PNG (libspng) or JPEG (TurboJPEG) bytes in memory.
 *
 * Used by `tttd generate` to write files and by the daemon to answer with image bytes. Stateless
 * and thread-safe: each call makes and frees its own encoder context.
 */
#ifndef TTTD_SERVER_IMAGE_ENCODE_H
#define TTTD_SERVER_IMAGE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

typedef enum srv_image_format {
    SRV_IMAGE_PNG = 0,  /* lossless, 8-bit truecolor, libspng's default compression */
    SRV_IMAGE_JPEG = 1, /* baseline JPEG, 4:2:0 chroma subsampling, accurate DCT */
} srv_image_format;

/* Largest width or height accepted (JPEG's own limit is 65535). */
#define SRV_IMAGE_MAX_SIDE 65500

/*
 * Encodes rgb (h rows of w pixels, 3 bytes R, G, B each, no row padding) into a new buffer.
 * quality: JPEG quality in [1, 100]; ignored for PNG.
 * On success returns 0 and sets *out (malloc'd, the caller frees it with free()) and *out_len.
 * On failure returns a negative errno value (-EINVAL: NULL pointers, w or h outside
 * [1, SRV_IMAGE_MAX_SIDE], quality out of range, unknown format; -ENOMEM; -EIO: the library
 * failed), leaves *out NULL and writes a one-line message to errbuf (when errlen > 0).
 */
int srv_image_encode(const uint8_t *rgb, int w, int h, srv_image_format fmt, int quality,
                     uint8_t **out, size_t *out_len, char *errbuf, size_t errlen);

/*
 * Text an image carries (issue 15, "Metadata"); either string may be NULL or "" (not written).
 * PNG: parameters as a tEXt chunk named "parameters" (an iTXt chunk of that name when the text is
 * not ASCII, as A1111 / Pillow write it), json as an iTXt chunk named "tttd" (UTF-8).
 * JPEG: parameters as the EXIF UserComment (an APP1 "Exif" segment right after SOI: TIFF IFD0 ->
 * Exif IFD -> tag 0x9286, "ASCII\0\0\0" + the bytes when ASCII, else "UNICODE\0" + UTF-16BE),
 * cut at a character boundary to what one segment holds (64 KiB); json is not written.
 * Both strings are NUL-terminated and meant to be UTF-8; bytes that are not are written anyway
 * (PNG) or read as well as can be without reading past the NUL (JPEG).
 */
typedef struct srv_image_meta {
    const char *parameters; /* A1111's infotext (api/metadata.h's api_meta_infotext) */
    const char *json;       /* tttd's JSON (api_meta_json) */
} srv_image_meta;

/* srv_image_encode plus metadata (meta NULL: none, as srv_image_encode). */
int srv_image_encode_meta(const uint8_t *rgb, int w, int h, srv_image_format fmt, int quality,
                          const srv_image_meta *meta, uint8_t **out, size_t *out_len,
                          char *errbuf, size_t errlen);

/* "png", "jpeg". */
const char *srv_image_format_name(srv_image_format fmt);

/*
 * The format a file name asks for, from its extension (case-insensitive): ".png" -> PNG,
 * ".jpg" / ".jpeg" -> JPEG. Returns 0 and sets *fmt, or -EINVAL for any other name.
 */
int srv_image_format_from_path(const char *path, srv_image_format *fmt);

#endif
