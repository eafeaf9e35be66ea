/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors header validator.
 *
 * Each input is a whole file image given to eng_safetensors_open_memory. When
 * it is accepted, every byte of every tensor is read (so that an offset the
 * validator let through outside the image shows up under ASan) and float
 * tensors are converted to F32. Seeds: tests/fuzz/corpus/safetensors/.
 */
#include <stdint.h>
#include <stdlib.h>

#include "engine/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_safetensors *st = NULL;
    eng_error err;

    /* libFuzzer hands over a heap copy of exactly size bytes, so ASan sees a read past it. */
    if (eng_safetensors_open_memory(&st, data, size, "fuzz", &err) == 0) {
        size_t n = eng_safetensors_count(st);
        uint8_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            const eng_st_tensor *t = eng_safetensors_at(st, i);
            const uint8_t *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++)
                sum = (uint8_t)(sum + p[k]);
            if (eng_safetensors_find(st, t->name) != t)
                abort(); /* names are unique and sorted: find must return the same record */
            if (t->dtype != ENG_DTYPE_I32) {
                size_t numel = t->nbytes / eng_dtype_size(t->dtype);
                float *f = malloc(numel ? numel * sizeof *f : 1);
                if (f) {
                    if (eng_st_tensor_to_f32(t, f, &err) != 0)
                        abort();
                    free(f);
                }
            }
        }
        (void)eng_safetensors_metadata(st, "format");
        sink = sum;
        eng_safetensors_close(st);
    }
    return 0;
}
