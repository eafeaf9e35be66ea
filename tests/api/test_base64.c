/*
 * test_base64.c - the encoder and decoder against the test vectors of RFC 4648 section 10, a
 * round trip of every length up to 300 over random bytes, and the decoder's refusals.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "api/base64.h"

static const struct {
    const char *in, *out;
} rfc4648[] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

Test(api_base64, rfc4648_vectors)
{
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        size_t n = strlen(rfc4648[i].in);
        char out[16];
        memset(out, 'X', sizeof out);
        cr_expect_eq(api_base64_encoded_len(n), strlen(rfc4648[i].out));
        size_t len = api_base64_encode((const uint8_t *)rfc4648[i].in, n, out);
        cr_expect_eq(len, strlen(rfc4648[i].out));
        cr_expect_str_eq(out, rfc4648[i].out);

        size_t l2;
        char *a = api_base64_encode_alloc((const uint8_t *)rfc4648[i].in, n, &l2);
        cr_assert_not_null(a);
        cr_expect_str_eq(a, rfc4648[i].out);
        cr_expect_eq(l2, len);
        free(a);

        uint8_t back[16];
        size_t bl = 99;
        cr_expect_eq(api_base64_decode(rfc4648[i].out, len, back, &bl), 0);
        cr_expect_eq(bl, n);
        cr_expect(memcmp(back, rfc4648[i].in, n) == 0);
    }
}

Test(api_base64, the_whole_alphabet_and_high_bytes)
{
    const uint8_t in[] = {0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f,
                          0x41, 0x14, 0x93, 0x51, 0x55, 0x97, 0x61, 0x96, 0x9b, 0x71, 0xd7, 0x9f,
                          0x82, 0x18, 0xa3, 0x92, 0x59, 0xa7, 0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf,
                          0xc3, 0x1c, 0xb3, 0xd3, 0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf};
    char out[80];
    api_base64_encode(in, sizeof in, out);
    cr_expect_str_eq(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
}

Test(api_base64, round_trip_every_length)
{
    uint64_t s = 12345;
    uint8_t in[300], back[300];
    char enc[404];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            in[i] = (uint8_t)(s >> 56);
        }
        size_t len = api_base64_encode(in, n, enc);
        cr_assert_eq(len, api_base64_encoded_len(n));
        cr_assert_eq(enc[len], '\0');
        cr_assert_leq(n, api_base64_decoded_max(len));
        size_t bl;
        cr_assert_eq(api_base64_decode(enc, len, back, &bl), 0, "n=%zu", n);
        cr_assert_eq(bl, n);
        cr_assert(memcmp(in, back, n) == 0, "n=%zu", n);
    }
}

Test(api_base64, decoder_refuses_malformed_input)
{
    static const char *const bad[] = {
        "Zg=",      /* not a multiple of 4 */
        "Zg",       /* unpadded */
        "Z===",     /* three pads */
        "Zg==Zg==", /* padding in the middle */
        "Zm9v\n",   /* whitespace */
        "Zm 9",     /* a space */
        "Zm-_",     /* the URL-safe alphabet */
        "Zh==",     /* non-zero bits after the last byte (not canonical) */
        "Zm9=",     /* likewise with one pad */
        "=Zg=",     /* pad first */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t out[16];
        size_t l;
        cr_expect_eq(api_base64_decode(bad[i], strlen(bad[i]), out, &l), -1, "accepted \"%s\"",
                     bad[i]);
    }
}
