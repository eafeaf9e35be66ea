/*
 * a1111.c - AUTOMATIC1111's answer shapes (see a1111.h). Built with jansson but for the images,
 * whose base64 is written straight into the answer buffer as response.c does.
 */
#include "api/a1111.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/base64.h"
#include "api/buf.h"
#include "api/metadata.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

static char *dump_take(json_t *v)
{
    if (!v)
        return NULL;
    char *s = json_dumps(v, DUMP_FLAGS | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

static json_t *str_or_empty(const char *s) { return json_string(s ? s : ""); }

static json_t *seed_json(uint64_t seed) { return json_integer((json_int_t)(seed & (uint64_t)INT64_MAX)); }

/* A1111's infotext of one image (the text its PNGs carry, see metadata.h). */
static json_t *infotext(const api_generate_request *q, const char *model, uint64_t seed)
{
    api_image_meta m = {.prompt = q->prompt, .negative_prompt = q->negative_prompt,
                        .seed = seed, .steps = q->steps, .guidance = q->guidance,
                        .width = q->width, .height = q->height, .model = model};
    char *s = api_meta_infotext(&m);
    json_t *v = s ? json_string(s) : NULL;
    free(s);
    return v;
}

static json_t *parameters(const api_generate_request *q)
{
    return json_pack("{s:o, s:o, s:i, s:i, s:i, s:f, s:o, s:i, s:i, s:s}",
                     "prompt", str_or_empty(q->prompt),
                     "negative_prompt", str_or_empty(q->negative_prompt),
                     "width", q->width, "height", q->height, "steps", q->steps,
                     "cfg_scale", q->guidance,
                     "seed", q->has_seed ? seed_json(q->seed) : json_integer(-1),
                     "batch_size", q->batch_size, "n_iter", q->n_iter,
                     "sampler_name", API_A1111_SAMPLER);
}

static json_t *info(const api_generate_request *q, const char *model, int64_t created,
                    const api_image *images, int n)
{
    json_t *seeds = json_array(), *subseeds = json_array(), *prompts = json_array(),
           *negs = json_array(), *texts = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(seeds, seed_json(images[i].seed));
        json_array_append_new(subseeds, json_integer(-1));
        json_array_append_new(prompts, str_or_empty(q->prompt));
        json_array_append_new(negs, str_or_empty(q->negative_prompt));
        json_array_append_new(texts, infotext(q, model, images[i].seed));
    }
    char stamp[32] = "";
    time_t t = (time_t)created;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:o, s:i, s:i, s:s, s:f, s:i, s:i, "
                     "s:i, s:o, s:s, s:o}",
                     "prompt", str_or_empty(q->prompt), "all_prompts", prompts,
                     "negative_prompt", str_or_empty(q->negative_prompt),
                     "all_negative_prompts", negs,
                     "seed", n > 0 ? seed_json(images[0].seed) : json_integer(-1),
                     "all_seeds", seeds, "subseed", -1, "all_subseeds", subseeds,
                     "width", q->width, "height", q->height,
                     "sampler_name", API_A1111_SAMPLER, "cfg_scale", q->guidance,
                     "steps", q->steps, "batch_size", q->batch_size, "n_iter", q->n_iter,
                     "sd_model_name", str_or_empty(model), "job_timestamp", stamp,
                     "infotexts", texts);
}

char *api_a1111_txt2img_response(const api_generate_request *req, const char *prompt,
                                 const char *negative_prompt, const char *model,
                                 int64_t created_unix, const api_image *images, int n)
{
    api_generate_request q = *req; /* a shallow copy: only the prompts differ */
    q.prompt = (char *)prompt;
    q.negative_prompt = (char *)negative_prompt;
    req = &q;
    char *params = dump_take(parameters(req));
    char *inf = dump_take(info(req, model, created_unix, images, n));
    /* "info" is a string holding JSON, as A1111 answers it. */
    char *inf_str = inf ? dump_take(json_string(inf)) : NULL;
    free(inf);
    if (!params || !inf_str) {
        free(params);
        free(inf_str);
        return NULL;
    }
    api_buf b = {0};
    api_buf_puts(&b, "{\"images\":[");
    for (int i = 0; i < n; i++) {
        api_buf_puts(&b, i ? ",\"" : "\"");
        size_t len = images[i].data ? images[i].len : 0;
        char *p = api_buf_reserve(&b, api_base64_encoded_len(len));
        if (p)
            api_buf_commit(&b, api_base64_encode(images[i].data, len, p));
        api_buf_puts(&b, "\"");
    }
    api_buf_printf(&b, "],\"parameters\":%s,\"info\":%s}", params, inf_str);
    free(params);
    free(inf_str);
    if (api_buf_failed(&b)) {
        api_buf_free(&b);
        return NULL;
    }
    return api_buf_take(&b, NULL);
}

char *api_a1111_sd_models(const api_a1111_model *models, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:n, s:n, s:s, s:n}",
                                           "title", models[i].name,
                                           "model_name", models[i].name, "hash", "sha256",
                                           "filename", models[i].path ? models[i].path : "",
                                           "config"));
    return dump_take(a);
}

char *api_a1111_samplers(void)
{
    json_t *aliases = json_array();
    for (int i = 0; api_a1111_sampler_aliases[i]; i++)
        json_array_append_new(aliases, json_string(api_a1111_sampler_aliases[i]));
    return dump_take(json_pack("[{s:s, s:o, s:{}}]", "name", API_A1111_SAMPLER, "aliases",
                               aliases, "options"));
}

char *api_a1111_options(const char *model)
{
    return dump_take(json_pack("{s:s, s:n, s:s, s:s, s:i, s:b}", "sd_model_checkpoint",
                               model ? model : "", "sd_checkpoint_hash", "samples_format",
                               "png", "sd_model_name", model ? model : "", "CLIP_stop_at_last_layers",
                               1, "enable_pnginfo", 0));
}

char *api_a1111_progress_json(const api_a1111_progress *p)
{
    char stamp[32] = "0";
    if (p->job_timestamp > 0) {
        time_t t = (time_t)p->job_timestamp;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    }
    return dump_take(json_pack("{s:f, s:f, s:{s:b, s:b, s:s, s:i, s:s, s:i, s:i, s:i}, s:n, "
                               "s:n}",
                               "progress", p->progress, "eta_relative", p->eta_relative,
                               "state", "skipped", 0, "interrupted", 0, "job",
                               p->job ? p->job : "", "job_count", p->job_count,
                               "job_timestamp", stamp, "job_no", p->job_count > 0 ? 1 : 0,
                               "sampling_step", p->sampling_step, "sampling_steps",
                               p->sampling_steps, "current_image", "textinfo"));
}
