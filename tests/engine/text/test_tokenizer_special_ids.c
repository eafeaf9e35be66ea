/*
 * test_tokenizer_special_ids.c - a tokenizer.json whose post-processor names special token ids
 * outside the vocabulary is refused when it loads (found by tests/fuzz/fuzz_tokenizer_load:
 * such ids used to come out of eng_tokenizer_encode and reach the text encoders' embedding).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/core/error.h"
#include "engine/text/tokenizer.h"
#include "tests/common/test_util.h"

static char tmpdir[64];

static void make_tmp(void)
{
    strcpy(tmpdir, "/tmp/tttd_tokids_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void drop_tmp(void)
{
    tu_rmtree(tmpdir);
}

/* A three-piece Unigram tokenizer.json with post_processor post. */
static void put_tokenizer(const char *post)
{
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fprintf(f,
            "{\"added_tokens\": [{\"id\": 0, \"content\": \"<pad>\", \"special\": true},"
            " {\"id\": 1, \"content\": \"</s>\", \"special\": true}],"
            " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"},"
            " \"post_processor\": %s,"
            " \"model\": {\"type\": \"Unigram\", \"unk_id\": 2, \"vocab\": [[\"<pad>\", 0.0],"
            " [\"</s>\", 0.0], [\"<unk>\", 0.0], [\"a\", -1.0]]}}",
            post);
    fclose(f);
}

static const char template_fmt[] =
    "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\"}},"
    " {\"SpecialToken\": {\"id\": \"</s>\"}}], \"special_tokens\": {\"</s>\": {\"id\": \"</s>\","
    " \"ids\": [%d], \"tokens\": [\"</s>\"]}}}";

Test(tokenizer_special_ids, template_id_inside_the_vocabulary_loads, .init = make_tmp,
     .fini = drop_tmp)
{
    char post[512];
    snprintf(post, sizeof post, template_fmt, 1);
    put_tokenizer(post);
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), 0, "%s", err.msg);
    int32_t ids[4];
    int n = 0;
    cr_assert_eq(eng_tokenizer_encode(t, "a a", ids, 4, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 3);
    cr_assert_eq(ids[1], 3);
    cr_assert_eq(ids[2], 1);
    cr_assert_eq(ids[3], 0);
    eng_tokenizer_free(t);
}

Test(tokenizer_special_ids, template_id_outside_the_vocabulary_is_refused, .init = make_tmp,
     .fini = drop_tmp)
{
    char post[512];
    snprintf(post, sizeof post, template_fmt, 99999);
    put_tokenizer(post);
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), ENG_EFORMAT, "%s", err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "99999") && strstr(err.msg, "outside the vocabulary"), "%s",
              err.msg);
}

Test(tokenizer_special_ids, roberta_ids_outside_the_vocabulary_are_refused, .init = make_tmp,
     .fini = drop_tmp)
{
    put_tokenizer("{\"type\": \"RobertaProcessing\", \"cls\": [\"<s>\", 4],"
                  " \"sep\": [\"</s>\", 1]}");
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), ENG_EFORMAT, "%s", err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
}
