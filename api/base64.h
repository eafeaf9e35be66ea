/*
 * base64.h - the standard base64 alphabet of RFC 4648 section 4, with '=' padding: images travel
 * in JSON (the native "b64", OpenAI's "b64_json") and in SSE events as base64.
 * Thread-safe; no allocation except in api_base64_encode_alloc.
 */
#ifndef TTTD_API_BASE64_H
#define TTTD_API_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters of the encoding of n bytes, without the NUL: 4 * ceil(n / 3). */
size_t api_base64_encoded_len(size_t n);

/* Writes the encoding of in[0..n) and a NUL into out (api_base64_encoded_len(n) + 1 bytes);
 * returns the length without the NUL. */
size_t api_base64_encode(const uint8_t *in, size_t n, char *out);

/* The encoding in a malloc'ed NUL-terminated string (NULL when out of memory); *len may be NULL. */
char *api_base64_encode_alloc(const uint8_t *in, size_t n, size_t *len);

/* Bytes the decoding of n characters may need: 3 * (n / 4). */
size_t api_base64_decoded_max(size_t n);

/*
 * Decodes n characters (a padded encoding: n a multiple of 4, '=' only at the end, no whitespace)
 * into out (api_base64_decoded_max(n) bytes). Returns 0 and the byte count in *out_len, or -1 on
 * malformed input.
 */
int api_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

#endif
