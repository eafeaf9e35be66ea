/*
 * metadata.c - the infotext and the JSON an image carries (see metadata.h).
 */
#include "api/metadata.h"

#include <stdlib.h>

#include <jansson.h>

#include "api/buf.h"
#include "api/request.h"

static const char *str(const char *s) { return s ? s : ""; }

char *api_meta_infotext(const api_image_meta *m)
{
    api_buf b = {0};
    api_buf_puts(&b, str(m->prompt));
    if (m->negative_prompt && m->negative_prompt[0])
        api_buf_printf(&b, "\nNegative prompt: %s", m->negative_prompt);
    api_buf_printf(&b, "\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d, "
                   "Model: %s", m->steps, API_A1111_SAMPLER, m->guidance,
                   (unsigned long long)m->seed, m->width, m->height, str(m->model));
    return api_buf_take(&b, NULL);
}

char *api_meta_json(const api_image_meta *m)
{
    json_t *v = json_pack("{s:s, s:s, s:I, s:i, s:f, s:i, s:i, s:s, s:s, s:s}",
                          "prompt", str(m->prompt), "negative_prompt", str(m->negative_prompt),
                          "seed", (json_int_t)(m->seed & (uint64_t)INT64_MAX), "steps", m->steps,
                          "guidance", m->guidance, "width", m->width, "height", m->height,
                          "model", str(m->model), "sampler", API_A1111_SAMPLER,
                          "tttd_version", TTTD_VERSION);
    if (!v)
        return NULL;
    /* 7 digits: the server keeps the guidance as a float, whose 4.2 would print 4.19999980926514. */
    char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(v);
    return s;
}
