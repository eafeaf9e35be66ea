/*
 * metadata.h - the generation parameters an image carries (issue 15, "Metadata"): AUTOMATIC1111's
 * "parameters" text (its infotext, which A1111's PNG Info tab and most image viewers read) and
 * tttd's own JSON of the request as understood. server/image_encode.c writes them into the file.
 *
 * Every function returns a malloc'ed NUL-terminated string (the caller frees it), or NULL when out
 * of memory. Thread-safety: reentrant; the arguments are read only.
 */
#ifndef TTTD_API_METADATA_H
#define TTTD_API_METADATA_H

#include <stdint.h>

/* tttd's version, as `tttd --version` prints it and the metadata JSON records it. */
#define TTTD_VERSION "0.1.0"

/* One image's parameters. NULL strings read as "". */
typedef struct api_image_meta {
    const char *prompt;
    const char *negative_prompt;
    uint64_t seed;
    int steps;
    double guidance;
    int width, height;
    const char *model;
} api_image_meta;

/*
 * A1111's infotext: "<prompt>\nNegative prompt: <neg>\nSteps: N, Sampler: Euler, CFG scale: G,
 * Seed: S, Size: WxH, Model: NAME" (the "Negative prompt" line only when there is one; G as %g).
 */
char *api_meta_infotext(const api_image_meta *m);

/* {"prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "model",
 *  "sampler": "Euler", "tttd_version"}, compact. */
char *api_meta_json(const api_image_meta *m);

#endif
