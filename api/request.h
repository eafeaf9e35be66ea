/*
 * request.h - request bodies to structs: strict parsing and validation of POST /v1/generate (the
 * native API) and POST /v1/images/generations (OpenAI's Images API), plus the small pieces of HTTP
 * content negotiation the contract needs (Content-Type, Accept).
 *
 * Strict means: an unknown field, a wrong JSON type, a value out of bounds each fail with 422 and
 * a message that names the field (and the type or bounds expected). JSON null in an optional field
 * means "absent". Bad JSON is 400 (API_ERR_BAD_JSON), bad UTF-8 400 (API_ERR_BAD_UTF8).
 * The body size limit (413) is the server's to enforce before parsing: see api_limits.
 *
 * Thread-safety: every function is reentrant; the structs belong to the caller.
 */
#ifndef TTTD_API_REQUEST_H
#define TTTD_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "api/errors.h"

/* Bounds of a request; the server fills them from its options (api_limits_init gives these). */
typedef struct api_limits {
    size_t max_body_bytes;   /* 1 MiB: larger bodies are refused with 413 (by the server) */
    size_t max_prompt_bytes; /* 32768: prompt and negative_prompt, in bytes of UTF-8 */
    int max_width;           /* 2048 */
    int max_height;          /* 2048 */
    int64_t max_pixels;      /* 4194304 (4 Mpx): width * height */
    int size_multiple;       /* 16 (VAE scale 8 x patch 2); also the smallest side */
    int max_steps;           /* 100 */
    int max_n;               /* 8 */
    double max_guidance;     /* 30.0; the smallest is 0 */
    uint32_t max_timeout_ms; /* 600000 (10 min) */
} api_limits;

void api_limits_init(api_limits *l);

typedef enum api_format {
    API_FORMAT_PNG = 0,
    API_FORMAT_JPEG = 1,
} api_format;

/* "png" / "jpeg"; the MIME type "image/png" / "image/jpeg". */
const char *api_format_name(api_format f);
const char *api_format_mime(api_format f);
/* "png", "jpeg" -> 0; otherwise -1. */
int api_format_parse(const char *s, api_format *out);

/* The JPEG quality of a request that does not give one (also `tttd generate`'s). */
#define API_DEFAULT_QUALITY 90

/*
 * Values of omitted fields; the server fills them (from its options and the model's config).
 * api_defaults_init gives the engine's steps and guidance (ENG_PIPELINE_DEFAULT_STEPS and
 * _GUIDANCE in engine/pipeline.h) and API_DEFAULT_QUALITY.
 */
typedef struct api_defaults {
    int width, height;     /* 1024 x 1024; the server puts the model's size */
    int steps;             /* ENG_PIPELINE_DEFAULT_STEPS (28) */
    double guidance;       /* ENG_PIPELINE_DEFAULT_GUIDANCE (7.0) */
    int n;                 /* 1 */
    api_format format;     /* png */
    int quality;           /* API_DEFAULT_QUALITY (90; JPEG quality 1..100) */
    uint32_t timeout_ms;   /* 0: no per-request timeout unless the body gives one */
} api_defaults;

void api_defaults_init(api_defaults *d);

/*
 * Checks that defaults lie inside limits (what a body could have asked for), so that a request
 * that omits a field never gets a value a client could not have sent. The server calls it once
 * at start-up, after filling both from its options. 0, or -1 with a message naming the option.
 */
int api_defaults_check(const api_defaults *d, const api_limits *l, char *msg, size_t msglen);

/* Which endpoint a request came through: it decides the answer's shape. */
typedef enum api_request_kind {
    API_REQUEST_NATIVE = 0, /* POST /v1/generate */
    API_REQUEST_OPENAI = 1, /* POST /v1/images/generations */
    API_REQUEST_A1111 = 2,  /* POST /sdapi/v1/txt2img (AUTOMATIC1111's API) */
} api_request_kind;

/*
 * A parsed request. Strings are owned (malloc'ed, NUL-terminated, valid UTF-8 without NUL bytes)
 * and freed by api_generate_request_free.
 */
/*
 * Seeds the server picks are below API_SEED_RANDOM_LIMIT (2^52), so that seed + k of every image
 * of a request stays below 2^53: JavaScript numbers (and any client that reads JSON integers
 * as doubles) carry them exactly, and the seed a page shows remakes its image.
 */
#define API_SEED_RANDOM_LIMIT ((uint64_t)1 << 52)

typedef struct api_generate_request {
    api_request_kind kind;
    char *prompt;          /* required, non-empty */
    char *negative_prompt; /* NULL when absent */
    int width, height;     /* multiples of limits.size_multiple */
    int steps;             /* 1..max_steps */
    double guidance;       /* 0..max_guidance */
    int has_seed;          /* 0: the server picks a random seed (seed absent, null or -1) */
    uint64_t seed;         /* 0..2^63-1 (a JSON integer); image i uses api_unit_seed(seed, i) */
    int n;                 /* 1..max_n */
    char *model;           /* NULL: the server's default model */
    api_format format;
    int has_format;        /* 1 when the body named the format (Accept may choose otherwise) */
    int quality;           /* 1..100 */
    int stream;            /* native only: answer with Server-Sent Events */
    uint32_t timeout_ms;   /* 0: none; else 1..max_timeout_ms */
    int preview_every;     /* native, stream only: a preview event every k steps; 0: none */
    /* Native and A1111 only: 1 / 0 as the body's "metadata" says (generation parameters in the
     * image files); -1 when absent: the server's default (tttd serve --no-metadata). */
    int metadata;
    /* OpenAI only, echoed in the answer: */
    char size[24];         /* "1024x1024" as answered (the chosen size when "auto") */
    char quality_label[16]; /* the request's "quality" ("auto" when absent) */
    /* After a failed parse (the rest zeroed): the field at fault, "" when none is (bad JSON). */
    char error_param[72];
    /* A1111 only: n = batch_size * n_iter; the fields the parser ignored (comma-separated, cut
     * with "..." when long; "" when none), for one log line. */
    int batch_size, n_iter;
    char ignored[192];
} api_generate_request;

/* Frees the owned strings and zeroes *r; NULL or a zeroed struct is fine. */
void api_generate_request_free(api_generate_request *r);

/*
 * Parses a POST /v1/generate body of len bytes (need not be NUL-terminated). On success returns 0
 * and fills *out (free it with api_generate_request_free). On failure returns -1, sets *code and
 * writes a message naming the field into msg (msglen bytes, may be 0), and leaves *out zeroed.
 * Fields: prompt (string, required), negative_prompt (string), width, height (integers), steps
 * (integer), guidance (number), seed (integer >= 0, or -1 for random), n (integer), model (string), format
 * ("png"|"jpeg"), quality (integer 1..100), stream (boolean), timeout_ms (integer),
 * preview_every (integer 0..max_steps), metadata (boolean).
 */
int api_parse_generate(const char *body, size_t len, const api_limits *limits,
                       const api_defaults *defaults, api_generate_request *out, api_err *code,
                       char *msg, size_t msglen);

/*
 * Parses a POST /v1/images/generations body (OpenAI's Images API) into the same struct, kind
 * API_REQUEST_OPENAI. Fields: prompt (required), n, size ("WxH" or "auto"), response_format
 * ("b64_json"; "url" is refused with API_ERR_FIELD_UNSUPPORTED), output_format ("png"|"jpeg";
 * "webp" refused), output_compression (0..100, the JPEG quality, 0 meaning 1), model (OpenAI's own
 * names "dall-e-*" and "gpt-image-*" mean the server's default model). Accepted, validated and
 * ignored: quality (auto|low|medium|high|standard|hd, echoed), style (vivid|natural),
 * background (auto|opaque; "transparent" refused), moderation (auto|low), user (string),
 * stream (false only), partial_images (0..3). tttd extensions: negative_prompt, steps, guidance,
 * seed, timeout_ms.
 */
int api_parse_openai_images(const char *body, size_t len, const api_limits *limits,
                            const api_defaults *defaults, api_generate_request *out,
                            api_err *code, char *msg, size_t msglen);

/*
 * Parses a POST /sdapi/v1/txt2img body (AUTOMATIC1111's API) into the same struct, kind
 * API_REQUEST_A1111. Fields: prompt (required), negative_prompt, width, height, steps, cfg_scale
 * (the guidance), seed (-1 or absent: random; else 0..2^63-1), batch_size and n_iter (1..max_n
 * each, their product at most max_n: n), sampler_name and sampler_index (one of
 * API_A1111_SAMPLER's names), metadata (tttd's boolean, as on /v1/generate). Any other field
 * is A1111's and is ignored, not refused: its name goes to out->ignored (A1111 clients send
 * many: styles, restore_faces, override_settings, ...).
 * Omitted fields take the defaults, which are the model's, not A1111's 512 x 512 and 50 steps.
 */
int api_parse_a1111_txt2img(const char *body, size_t len, const api_limits *limits,
                            const api_defaults *defaults, api_generate_request *out,
                            api_err *code, char *msg, size_t msglen);

/* The one sampler, as A1111 names it, and its aliases (NULL-terminated). */
#define API_A1111_SAMPLER "Euler"
extern const char *const api_a1111_sampler_aliases[];

/* The seed of image i of a request: (seed + i) mod 2^63, so it stays a JSON integer. */
uint64_t api_unit_seed(uint64_t seed, int i);

/*
 * Content-Type check for a JSON body: "application/json" with optional parameters (a charset
 * other than utf-8 is refused); a missing header is accepted as JSON. 0 or -1 (415).
 */
int api_content_type_is_json(const char *content_type);

/* What a POST /v1/generate answers. */
typedef enum api_answer {
    API_ANSWER_JSON = 0,  /* application/json with base64 images */
    API_ANSWER_IMAGE = 1, /* the image bytes (n = 1 only) */
    API_ANSWER_SSE = 2,   /* text/event-stream */
} api_answer;

/*
 * Chooses the answer of a native request from its Accept header (NULL or "" = any type) with
 * q-values: stream requests need text/event-stream acceptable; otherwise application/json and
 * image/<format> compete by q; on a tie the image wins only when its range is the more
 * specific ("image/png" against "image" with any subtype against any type: an Accept of any
 * type gives JSON). When the body named no format, an acceptable image type picks it (sets
 * req->format). Image answers need n = 1. Returns 0 and *out, or -1 with API_ERR_NOT_ACCEPTABLE
 * in *code and a message in msg.
 */
int api_accept_choose(const char *accept, api_generate_request *req, api_answer *out,
                      api_err *code, char *msg, size_t msglen);

#endif
