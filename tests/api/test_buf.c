/*
 * test_buf.c - the growable buffer: appends and printf across several growths, in-place writes
 * through reserve/commit, consume, take (also of an empty buffer), and a failed buffer that
 * ignores later appends and takes as NULL.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/buf.h"

Test(api_buf, appends_grow_and_stay_nul_terminated)
{
    api_buf b = {0};
    char expect[4096] = "";
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        api_buf_printf(&b, "%d,", i);
        n += (size_t)snprintf(expect + n, sizeof expect - n, "%d,", i);
    }
    api_buf_append(&b, "xy", 2);
    api_buf_puts(&b, "z");
    memcpy(expect + n, "xyz", 4);
    n += 3;
    cr_assert_not(api_buf_failed(&b));
    cr_assert_eq(b.len, n);
    cr_assert_geq(b.cap, n + 1);
    cr_assert_str_eq(b.data, expect);
    api_buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    api_buf_free(&b); /* twice is fine */
}

Test(api_buf, reserve_then_commit_writes_in_place)
{
    api_buf b = {0};
    api_buf_puts(&b, "ab");
    char *p = api_buf_reserve(&b, 1000);
    cr_assert_not_null(p);
    cr_assert_eq(p, b.data + 2);
    cr_assert_geq(b.cap, 2 + 1000 + 1);
    memset(p, 'c', 1000);
    api_buf_commit(&b, 1000);
    cr_assert_eq(b.len, 1002);
    cr_assert_eq(b.data[1002], '\0');
    cr_assert_eq(b.data[1001], 'c');
    size_t cap = b.cap;
    cr_assert_not_null(api_buf_reserve(&b, 0));
    cr_assert_eq(b.cap, cap, "no growth when there is room");
    size_t len = 0;
    char *s = api_buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_eq(len, 1002);
    cr_assert_eq(strlen(s), 1002);
    cr_assert_null(b.data);
    free(s);
}

Test(api_buf, consume_drops_the_front)
{
    api_buf b = {0};
    api_buf_puts(&b, "hello world");
    api_buf_consume(&b, 6);
    cr_assert_str_eq(b.data, "world");
    cr_assert_eq(b.len, 5);
    api_buf_consume(&b, 99);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.data, "");
    api_buf_free(&b);
    api_buf_consume(&b, 1); /* an empty, never-allocated buffer */
    cr_assert_eq(b.len, 0);
}

Test(api_buf, take_of_an_empty_buffer_is_an_empty_string)
{
    api_buf b = {0};
    size_t len = 7;
    char *s = api_buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);
    free(s);
}

Test(api_buf, a_failed_buffer_ignores_appends_and_takes_as_null)
{
    api_buf b = {0};
    api_buf_puts(&b, "abc");
    cr_assert_null(api_buf_reserve(&b, SIZE_MAX - 2), "more than memory can hold");
    cr_assert(api_buf_failed(&b));
    api_buf_puts(&b, "def");
    api_buf_printf(&b, "%d", 1);
    api_buf_commit(&b, 1);
    cr_assert_eq(b.len, 3);
    size_t len = 99;
    cr_assert_null(api_buf_take(&b, &len));
    cr_assert_eq(len, 99, "untouched");
    cr_assert_null(b.data);
    cr_assert_not(api_buf_failed(&b), "take resets the buffer");
}
