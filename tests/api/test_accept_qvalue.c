/*
 * test_accept_qvalue.c - the q parameter of Accept (api/negotiate.c) read exactly as RFC 9110
 * section 12.4.2's qvalue: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]. A range whose q is
 * anything else is dropped, never read leniently (strtod took "0.5x" as 0.5, "nan" as NaN, "2"
 * as 1 and "abc" as 1).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "api/request.h"

/* The answer to a one-image request with no "format" under this Accept; -1 for 406. */
static int choose(const char *accept, api_format *format)
{
    api_generate_request r;
    memset(&r, 0, sizeof r);
    r.n = 1;
    api_answer a;
    api_err code = API_OK;
    char msg[256];
    if (api_accept_choose(accept, &r, &a, &code, msg, sizeof msg)) {
        cr_expect_eq(code, API_ERR_NOT_ACCEPTABLE, "%s", accept);
        return -1;
    }
    if (format)
        *format = r.format;
    return (int)a;
}

Test(security_strict_accept, qvalue_grammar_is_exact)
{
    /* JSON at the lowest weight there is; a valid PNG q above it wins. */
    static const char *const valid[] = {"1", "1.", "1.0", "1.000", "0.5", "0.01", "0.002",
                                        "0.999", "0.5 ", "0.5\t"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        char accept[96];
        snprintf(accept, sizeof accept, "application/json;q=0.001, image/png;q=%s", valid[i]);
        cr_expect_eq(choose(accept, NULL), API_ANSWER_IMAGE, "q=%s: %s", valid[i], accept);
    }
    cr_expect_eq(choose("application/json;Q=0.001, image/png;Q=0.5", NULL), API_ANSWER_IMAGE);
    /* 0 and 0.000 are valid and refuse the type. */
    cr_expect_eq(choose("image/png;q=0, application/json;q=0.001", NULL), API_ANSWER_JSON);
    cr_expect_eq(choose("image/png;q=0.000", NULL), -1);

    /* Anything else drops its range. */
    static const char *const bad[] = {"abc", "0.5x", "2", "-1", "nan", "inf", "1e0", "0x1p-1",
                                      "1.001", "0.0001", "01", ".5", "", "\"0.5\"", "+0.5",
                                      "0.5e0", "1.0000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char accept[96];
        /* Were the q read at all (as 1, 0.5 or even 0.002), PNG would win over JSON at 0.001. */
        snprintf(accept, sizeof accept, "application/json;q=0.001, image/png;q=%s", bad[i]);
        cr_expect_eq(choose(accept, NULL), API_ANSWER_JSON, "q=%s: %s", bad[i], accept);
        /* Alone, nothing acceptable is left. */
        snprintf(accept, sizeof accept, "image/png;q=%s", bad[i]);
        cr_expect_eq(choose(accept, NULL), -1, "q=%s alone: %s", bad[i], accept);
    }
}

Test(security_strict_accept, a_dropped_range_leaves_the_others)
{
    api_format f = API_FORMAT_JPEG;
    /* q=-1 once made PNG q=0 (refused) and so JPEG won through the image range; dropped, PNG
     * takes that range's 0.5 and is the default of the tie. */
    cr_expect_eq(choose("image/*;q=0.5, image/png;q=-1", &f), API_ANSWER_IMAGE);
    cr_expect_eq(f, API_FORMAT_PNG);
    /* q=nan once made JSON's weight NaN, which compares false with everything: 406. */
    cr_expect_eq(choose("application/json;q=nan, image/png;q=0.1", NULL), API_ANSWER_IMAGE);
    /* A bad q on a range that does not match changes nothing. */
    cr_expect_eq(choose("text/html;q=abc, application/json", NULL), API_ANSWER_JSON);
}
