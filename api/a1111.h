/*
 * a1111.h - the answers of tttd's AUTOMATIC1111-compatible routes (/sdapi/v1/...): txt2img's
 * {"images", "parameters", "info"}, and the small GET answers (sd-models, samplers, options,
 * progress) in A1111's field names. The txt2img body is parsed by request.h's
 * api_parse_a1111_txt2img.
 *
 * Every function returns a malloc'ed NUL-terminated JSON string, or NULL when out of memory.
 * Thread-safety: reentrant; the arguments are read only.
 */
#ifndef TTTD_API_A1111_H
#define TTTD_API_A1111_H

#include "api/request.h"
#include "api/response.h"

/*
 * POST /sdapi/v1/txt2img's answer: "images" (base64 of each image, in order), "parameters" (the
 * request as understood: prompt, negative_prompt, width, height, steps, cfg_scale, seed (-1 when
 * the server picked it), batch_size, n_iter, sampler_name) and "info", a JSON object in a string
 * as A1111 writes it: prompt, all_prompts, negative_prompt, all_negative_prompts, seed, all_seeds,
 * subseed, all_subseeds, width, height, sampler_name, cfg_scale, steps, batch_size, n_iter,
 * sd_model_name, job_timestamp (YYYYMMDDhhmmss, UTC) and infotexts (A1111's "parameters" text of
 * each image).
 */
/* The request's prompts are passed apart (prompt, negative_prompt; NULL reads as ""): the
 * server hands req's strings to the job. */
char *api_a1111_txt2img_response(const api_generate_request *req, const char *prompt,
                                 const char *negative_prompt, const char *model,
                                 int64_t created_unix, const api_image *images, int n);

/* One loaded model, as GET /sdapi/v1/sd-models lists it. */
typedef struct api_a1111_model {
    const char *name; /* title and model_name */
    const char *path; /* filename: the model's folder */
} api_a1111_model;

/* [{"title", "model_name", "hash": null, "sha256": null, "filename", "config": null}, ...] */
char *api_a1111_sd_models(const api_a1111_model *models, int n);
/* [{"name": "Euler", "aliases": ["k_euler", "euler"], "options": {}}] */
char *api_a1111_samplers(void);
/* The options a client reads: sd_model_checkpoint (model), samples_format, and a few more. */
char *api_a1111_options(const char *model);

/* What GET /sdapi/v1/progress reports. */
typedef struct api_a1111_progress {
    double progress;     /* 0..1 of the job in front (the oldest running one); 0 when idle */
    double eta_relative; /* seconds it still needs, estimated from its pace; 0 when idle */
    int job_count;       /* generation jobs queued or running */
    const char *job;     /* the job in front's id, or "" */
    int sampling_step, sampling_steps;
    int64_t job_timestamp; /* its creation (Unix seconds), 0 when idle */
} api_a1111_progress;

/* {"progress", "eta_relative", "state": {"skipped", "interrupted", "job", "job_count",
 *  "job_timestamp", "job_no", "sampling_step", "sampling_steps"}, "current_image": null,
 *  "textinfo": null} */
char *api_a1111_progress_json(const api_a1111_progress *p);

#endif
