/*
 * fuzz_request.c - libFuzzer target for the request parsers: arbitrary bytes as a body for
 * api_parse_generate, api_parse_openai_images and api_parse_a1111_txt2img, and as Content-Type
 * and Accept headers.
 *
 * Checked on every input: each parser either succeeds with a request inside the limits (prompt
 * non-empty and within max_prompt_bytes, sides multiples of size_multiple, pixels, steps, n,
 * guidance, quality, timeout) or fails with a 400/422 code and a message; the error body built
 * from that message is valid JSON; a parsed request's answers (native, OpenAI, A1111) are valid
 * JSON, and an A1111 request's n is its batch_size x n_iter;
 * the Accept choice of a parsed request is one of the three answers or 406. Leaks show up under
 * ASan's leak checker (make fuzz builds with -fsanitize=address).
 * Seeds: tests/fuzz/corpus/request/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/a1111.h"
#include "api/errors.h"
#include "api/request.h"
#include "api/response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_request: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static void check_json(char *s)
{
    CHECK(s != NULL);
    json_t *j = json_loads(s, 0, NULL);
    CHECK(j != NULL);
    json_decref(j);
    free(s);
}

static void check_request(const api_generate_request *r, const api_limits *l)
{
    CHECK(r->prompt && r->prompt[0] && strlen(r->prompt) <= l->max_prompt_bytes);
    CHECK(!r->negative_prompt || strlen(r->negative_prompt) <= l->max_prompt_bytes);
    CHECK(r->width >= l->size_multiple && r->width <= l->max_width && r->width % l->size_multiple == 0);
    CHECK(r->height >= l->size_multiple && r->height <= l->max_height && r->height % l->size_multiple == 0);
    CHECK((int64_t)r->width * r->height <= l->max_pixels);
    CHECK(r->steps >= 1 && r->steps <= l->max_steps);
    CHECK(r->n >= 1 && r->n <= l->max_n);
    CHECK(r->guidance >= 0 && r->guidance <= l->max_guidance);
    CHECK(r->quality >= 1 && r->quality <= 100);
    CHECK(r->timeout_ms <= l->max_timeout_ms);
    CHECK(r->preview_every >= 0 && r->preview_every <= l->max_steps);
    CHECK(r->seed <= (uint64_t)INT64_MAX);
    CHECK(!r->model || r->model[0]);
}

/* kind: 0 native, 1 OpenAI, 2 A1111. */
static void one(int kind, const uint8_t *data, size_t size, const api_limits *l,
                const api_defaults *d, const char *header)
{
    api_generate_request r;
    api_err code = API_OK;
    char msg[256];
    const char *body = (const char *)data;
    int rc = kind == 1   ? api_parse_openai_images(body, size, l, d, &r, &code, msg, sizeof msg)
             : kind == 2 ? api_parse_a1111_txt2img(body, size, l, d, &r, &code, msg, sizeof msg)
                         : api_parse_generate(body, size, l, d, &r, &code, msg, sizeof msg);
    if (rc != 0) {
        CHECK(rc == -1 && r.prompt == NULL && r.model == NULL);
        int status = api_error_status(code);
        CHECK(status == 400 || status == 422);
        check_json(api_error_body(code, "%s", msg));
        return;
    }
    CHECK(code == API_OK);
    check_request(&r, l);
    api_metrics m = {1, 2, 3, 4, 5, 15, r.n, r.seed};
    static const uint8_t bytes[5] = {1, 2, 3, 4, 5};
    api_image img = {bytes, sizeof bytes, r.seed, r.format, r.width, r.height};
    check_json(api_generate_response("gen-fuzz", r.model ? r.model : "default", 0, &img, 1, &m));
    check_json(api_openai_images_response(0, &r, &img, 1, &m));
    if (kind == 2) {
        CHECK(r.n == r.batch_size * r.n_iter);
        CHECK(memchr(r.ignored, '\0', sizeof r.ignored) != NULL);
        check_json(api_a1111_txt2img_response(&r, r.prompt, r.negative_prompt, "default", 0, &img,
                                              1));
    }
    api_answer a;
    rc = api_accept_choose(header, &r, &a, &code, msg, sizeof msg);
    CHECK((rc == 0 && (a == API_ANSWER_JSON || a == API_ANSWER_SSE || a == API_ANSWER_IMAGE)) ||
          (rc == -1 && code == API_ERR_NOT_ACCEPTABLE));
    CHECK(rc != 0 || a != API_ANSWER_IMAGE || r.n == 1);
    api_generate_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    api_limits l;
    api_defaults d;
    api_limits_init(&l);
    api_defaults_init(&d);
    /* Small limits too, so that the bound checks are reached often. */
    api_limits small = l;
    small.max_prompt_bytes = 16;
    small.max_width = small.max_height = 256;
    small.max_pixels = 256 * 128;
    small.max_steps = 8;
    small.max_n = 2;
    api_defaults sd = d;
    sd.width = sd.height = 128;
    sd.steps = 4;
    CHECK(api_defaults_check(&d, &l, NULL, 0) == 0 && api_defaults_check(&sd, &small, NULL, 0) == 0);

    /* The input as a header line: up to the first NUL or newline, at most 512 bytes. */
    char header[513];
    size_t hl = 0;
    while (hl < size && hl < sizeof header - 1 && data[hl] && data[hl] != '\n')
        hl++;
    memcpy(header, data, hl);
    header[hl] = '\0';
    int ct = api_content_type_is_json(header);
    CHECK(ct == 0 || ct == -1);

    one(0, data, size, &l, &d, header);
    one(1, data, size, &l, &d, header);
    one(0, data, size, &small, &sd, "image/png");
    one(1, data, size, &small, &sd, NULL);
    one(2, data, size, &l, &d, NULL);
    one(2, data, size, &small, &sd, NULL);
    return 0;
}
