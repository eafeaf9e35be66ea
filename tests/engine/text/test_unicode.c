/*
 * test_unicode.c - engine/text/unicode.h: lossy UTF-8 decoding (checked against Python's
 * bytes.decode("utf-8", "replace")), classes, White_Space, lowercase, NFC (against Python's
 * unicodedata.normalize) and grapheme cluster lengths (UAX #29 examples).
 */
#include <criterion/criterion.h>

#include <string.h>

#include "engine/text/unicode.h"

/* Decodes all of s; returns the number of code points written to out. */
static size_t decode_all(const char *s, size_t n, uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n;)
        i += eng_utf8_decode(s + i, n - i, &out[m++]);
    return m;
}

static void expect_decode(const char *s, size_t n, const uint32_t *want, size_t n_want)
{
    uint32_t got[16];
    size_t m = decode_all(s, n, got);
    cr_assert_eq(m, n_want, "%zu code points, want %zu", m, n_want);
    for (size_t i = 0; i < m; i++)
        cr_assert_eq(got[i], want[i], "code point %zu: U+%04X, want U+%04X", i, got[i], want[i]);
}

#define R ENG_UC_REPLACEMENT

Test(unicode, utf8_lossy_decoding)
{
    static const uint32_t ok[] = {'a', 0xE9, 0x732B, 0x1F431};
    expect_decode("a\xc3\xa9\xe7\x8c\xab\xf0\x9f\x90\xb1", 10, ok, 4);
    static const uint32_t trunc[] = {R};
    expect_decode("\xe2\x82", 2, trunc, 1);     /* a valid prefix cut short: one U+FFFD */
    expect_decode("\xf0\x9f\x90", 3, trunc, 1);
    static const uint32_t sur[] = {R, R, R};
    expect_decode("\xed\xa0\x80", 3, sur, 3);   /* surrogates: ED alone is the maximal subpart */
    static const uint32_t over[] = {R, R};
    expect_decode("\xc0\xaf", 2, over, 2);      /* C0 can never start a sequence */
    static const uint32_t big[] = {R, R, R, R};
    expect_decode("\xf4\x90\x80\x80", 4, big, 4); /* above U+10FFFF */
    static const uint32_t mid[] = {'a', R, 'b'};
    expect_decode("a\x80" "b", 3, mid, 3);
    cr_assert(eng_utf8_valid("a\xef\xbf\xbd", 4)); /* a real U+FFFD is valid text */
    cr_assert(!eng_utf8_valid("a\xef\xbf", 3));
    char buf[4];
    cr_assert_eq(eng_utf8_encode(0xD800, buf), 3);
    cr_assert_eq(memcmp(buf, "\xef\xbf\xbd", 3), 0);
    cr_assert_eq(eng_utf8_encode(0x10FFFF, buf), 4);
    cr_assert_eq(memcmp(buf, "\xf4\x8f\xbf\xbf", 4), 0);
}

Test(unicode, classes_space_lower)
{
    cr_assert_eq(eng_uc_class_of('a'), ENG_UC_LETTER);
    cr_assert_eq(eng_uc_class_of(0x732B), ENG_UC_LETTER);
    cr_assert_eq(eng_uc_class_of('7'), ENG_UC_NUMBER);
    cr_assert_eq(eng_uc_class_of(0x0661), ENG_UC_NUMBER); /* Arabic-Indic one */
    cr_assert_eq(eng_uc_class_of(0x00BD), ENG_UC_NUMBER); /* ½ is No */
    cr_assert_eq(eng_uc_class_of('_'), ENG_UC_CONNECTOR);
    cr_assert_eq(eng_uc_class_of('!'), ENG_UC_PUNCT);
    cr_assert_eq(eng_uc_class_of(0x0301), ENG_UC_MARK);
    cr_assert_eq(eng_uc_class_of(0x1F431), ENG_UC_SYMBOL);
    cr_assert_eq(eng_uc_class_of(0x200D), ENG_UC_OTHER);
    cr_assert_eq(eng_uc_class_of(0x10FFFF), ENG_UC_OTHER);
    cr_assert(eng_uc_is_space(' ') && eng_uc_is_space('\t') && eng_uc_is_space(0x85));
    cr_assert(eng_uc_is_space(0xA0) && eng_uc_is_space(0x3000) && eng_uc_is_space(0x2029));
    cr_assert(!eng_uc_is_space(0x200B) && !eng_uc_is_space(0x1C) && !eng_uc_is_space('a'));
    uint32_t l[3];
    cr_assert(eng_uc_lower('A', l) == 1 && l[0] == 'a');
    cr_assert(eng_uc_lower(0x3A3, l) == 1 && l[0] == 0x3C3); /* Σ -> σ, never final ς */
    cr_assert(eng_uc_lower(0x130, l) == 2 && l[0] == 'i' && l[1] == 0x307);
    cr_assert(eng_uc_lower(0x1E9E, l) == 1 && l[0] == 0xDF);
    cr_assert(eng_uc_lower(0x732B, l) == 1 && l[0] == 0x732B);
}

static void expect_nfc(const uint32_t *in, size_t n, const uint32_t *want, size_t n_want)
{
    uint32_t out[32];
    size_t m = sizeof out / sizeof out[0];
    cr_assert_eq(eng_uc_nfc(in, n, out, &m), 0);
    cr_assert_eq(m, n_want, "%zu code points, want %zu", m, n_want);
    for (size_t i = 0; i < m; i++)
        cr_assert_eq(out[i], want[i], "code point %zu: U+%04X, want U+%04X", i, out[i], want[i]);
}

Test(unicode, nfc)
{
    expect_nfc((uint32_t[]){'e', 0x301}, 2, (uint32_t[]){0xE9}, 1);
    expect_nfc((uint32_t[]){'q', 0x307, 0x323}, 3, (uint32_t[]){'q', 0x323, 0x307}, 3);
    expect_nfc((uint32_t[]){0x1E0B, 0x323}, 2, (uint32_t[]){0x1E0D, 0x307}, 2);
    expect_nfc((uint32_t[]){0x212B}, 1, (uint32_t[]){0xC5}, 1);          /* singleton */
    expect_nfc((uint32_t[]){0x344}, 1, (uint32_t[]){0x308, 0x301}, 2);   /* excluded */
    expect_nfc((uint32_t[]){'a', 0x301, 0x301}, 3, (uint32_t[]){0xE1, 0x301}, 2); /* blocked */
    expect_nfc((uint32_t[]){0x301, 'e'}, 2, (uint32_t[]){0x301, 'e'}, 2);
    expect_nfc((uint32_t[]){0x1100, 0x1161, 0x11A8}, 3, (uint32_t[]){0xAC01}, 1); /* Hangul */
    expect_nfc((uint32_t[]){0xAC00, 0x11A8}, 2, (uint32_t[]){0xAC01}, 1);
    uint32_t out[2];
    size_t m = 2;
    cr_assert_eq(eng_uc_nfc((uint32_t[]){0xAC01}, 1, out, &m), -1, "capacity is checked");
}

static size_t glen(const uint32_t *cps, size_t n)
{
    return eng_uc_grapheme_len(cps, n);
}

Test(unicode, grapheme_clusters)
{
    cr_assert_eq(glen((uint32_t[]){'a', 'b'}, 2), 1);
    cr_assert_eq(glen((uint32_t[]){'e', 0x301, 'x'}, 3), 2);                  /* GB9 */
    cr_assert_eq(glen((uint32_t[]){'\r', '\n', 'a'}, 3), 2);                  /* GB3 */
    cr_assert_eq(glen((uint32_t[]){'\n', 0x301}, 2), 1);                      /* GB4 */
    cr_assert_eq(glen((uint32_t[]){0x1100, 0x1161, 0x11A8, 'a'}, 4), 3);      /* GB6-8 */
    cr_assert_eq(glen((uint32_t[]){0x1F468, 0x200D, 0x1F469, 0x200D, 0x1F467}, 5), 5); /* GB11 */
    cr_assert_eq(glen((uint32_t[]){'a', 0x200D, 0x1F469}, 3), 2);             /* no GB11 after a */
    cr_assert_eq(glen((uint32_t[]){0x1F1EB, 0x1F1F7, 0x1F1EF, 0x1F1F5}, 4), 2); /* GB12 */
    cr_assert_eq(glen((uint32_t[]){0x1F44D, 0x1F3FD}, 2), 2); /* skin tone: Extend */
    cr_assert_eq(glen((uint32_t[]){0x0600, 'a'}, 2), 2);                      /* GB9b prepend */
    cr_assert_eq(glen((uint32_t[]){'a', 0x0903}, 2), 2);                      /* GB9a */
    cr_assert_eq(glen((uint32_t[]){0xA9, 0xFE0F, 'x'}, 3), 2);
}
