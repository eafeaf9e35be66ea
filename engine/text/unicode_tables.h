/*
 * unicode_tables.h - the generated Unicode tables (engine/text/unicode_tables.c, written by
 * tools/gen_unicode_tables.py). Only engine/text/unicode.c reads them; everything else goes through
 * engine/unicode.h. Every array is sorted by its first field, for bisection.
 */
#ifndef TTTD_ENGINE_UNICODE_TABLES_H
#define TTTD_ENGINE_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* Code points lo..hi (inclusive) share the value v. */
typedef struct eng_uc_range {
    uint32_t lo, hi;
    uint32_t v;
} eng_uc_range;

typedef struct eng_uc_span {
    uint32_t lo, hi;
} eng_uc_span;

/* cp lowercases to l[0] l[1] l[2] (0-terminated when shorter). */
typedef struct eng_uc_lower_entry {
    uint32_t cp;
    uint32_t l[3];
} eng_uc_lower_entry;

/* Decomposition: cp -> a b (b == 0: a singleton). Composition: a b -> c (sorted by a, b). */
typedef struct eng_uc_pair {
    uint32_t a, b, c;
} eng_uc_pair;

extern const char eng_uc_unicode_version[];
/* v: eng_uc_class value (engine/text/unicode.h); the C classes and unassigned code points omitted. */
extern const eng_uc_range eng_uc_class_ranges[];
extern const size_t eng_uc_class_ranges_len;
extern const eng_uc_lower_entry eng_uc_lower_map[];
extern const size_t eng_uc_lower_map_len;
/* Here a is the code point, b c its canonical decomposition. */
extern const eng_uc_pair eng_uc_decomp_map[];
extern const size_t eng_uc_decomp_map_len;
extern const eng_uc_pair eng_uc_compose_map[];
extern const size_t eng_uc_compose_map_len;
/* v: canonical combining class (0 omitted). */
extern const eng_uc_range eng_uc_ccc_ranges[];
extern const size_t eng_uc_ccc_ranges_len;
/* v: eng_uc_gcb value (Other omitted). */
extern const eng_uc_range eng_uc_gcb_ranges[];
extern const size_t eng_uc_gcb_ranges_len;
extern const eng_uc_span eng_uc_extpict_ranges[];
extern const size_t eng_uc_extpict_ranges_len;

#endif
