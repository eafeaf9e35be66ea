/*
 * test_fsutil.c - the file-system helpers of engine/core/fsutil.h on real files in a scratch folder:
 * joins, kinds, mkdir -p, whole-file reads and atomic writes, folder copies (skips, .git), path
 * resolution of paths that do not exist yet.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/core/fsutil.h"
#include "tests/common/test_util.h"

static char root[64];

static void setup(void)
{
    strcpy(root, "/tmp/tttd_fsutil_XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) { tu_rmtree(root); }

TestSuite(fsutil, .init = setup, .fini = teardown);

static const char *at(const char *rel)
{
    static char buf[4][PATH_MAX];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", root, rel);
    return p;
}

static void put(const char *rel, const char *text)
{
    eng_error err = {0};
    cr_assert_eq(eng_write_file(at(rel), text, strlen(text), &err), 0, "%s", err.msg);
}

static char *get(const char *rel)
{
    eng_error err = {0};
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(eng_read_file(at(rel), &text, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(strlen(text), len);
    return text;
}

Test(fsutil, join_and_kinds)
{
    char buf[32];
    eng_error err = {0};
    cr_assert_eq(eng_path_join(buf, sizeof buf, "a/", "b", &err), 0);
    cr_assert_str_eq(buf, "a/b");
    cr_assert_eq(eng_path_join(buf, 4, "abc", "def", &err), ENG_EINVAL);
    cr_assert(eng_is_dir(root) && !eng_is_file(root));
    cr_assert(eng_dir_is_empty(root));
    put("f", "x");
    cr_assert(eng_is_file(at("f")) && !eng_is_dir(at("f")));
    cr_assert(!eng_dir_is_empty(root));
    cr_assert(!eng_dir_is_empty(at("missing")), "a folder that does not exist is not empty");
    cr_assert(eng_str_ends_with("model.safetensors", ".safetensors"));
    cr_assert(!eng_str_ends_with("st", ".safetensors"));
}

Test(fsutil, mkdir_p_makes_every_level_and_refuses_a_file)
{
    eng_error err = {0};
    cr_assert_eq(eng_mkdir_p(at("a/b/c/"), &err), 0, "%s", err.msg);
    cr_assert(eng_is_dir(at("a/b/c")));
    cr_assert_eq(eng_mkdir_p(at("a/b/c"), &err), 0, "existing folders are fine");
    put("a/file", "x");
    cr_assert_eq(eng_mkdir_p(at("a/file/d"), &err), ENG_EIO);
    cr_assert(strstr(err.msg, "a/file"), "%s", err.msg);
}

Test(fsutil, read_and_atomic_write)
{
    /* Larger than the reader's first buffer, with a NUL inside: the length counts. */
    size_t n = 10000;
    char *big = malloc(n);
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[5000] = '\0';
    eng_error err = {0};
    cr_assert_eq(eng_write_file(at("big"), big, n, &err), 0, "%s", err.msg);
    cr_assert_eq(access(at("big.tmp"), F_OK), -1, "the temporary file is renamed away");
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(eng_read_file(at("big"), &text, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(text, big, n), 0);
    cr_assert_eq(text[n], '\0');
    free(text), free(big);
    put("big", "short");
    text = get("big");
    cr_assert_str_eq(text, "short", "a rewrite replaces the whole file");
    free(text);
    cr_assert_eq(eng_read_file(at("missing"), &text, &len, &err), ENG_ENOTFOUND);
    cr_assert_null(text);
    cr_assert(strstr(err.msg, "missing"), "%s", err.msg);
    cr_assert_eq(eng_write_file(at("no/such/folder/f"), "x", 1, &err), ENG_EIO);
}

static int skip_b(const char *name, int is_folder)
{
    return !is_folder && strcmp(name, "b.txt") == 0;
}

Test(fsutil, copy_tree_follows_skips_and_leaves_git)
{
    eng_error err = {0};
    cr_assert_eq(eng_mkdir_p(at("src/sub/deeper"), &err), 0);
    cr_assert_eq(eng_mkdir_p(at("src/.git/lfs"), &err), 0);
    cr_assert_eq(eng_mkdir_p(at("dst"), &err), 0);
    put("src/a.txt", "A");
    put("src/b.txt", "B");
    put("src/sub/b.txt", "inner B");
    put("src/sub/deeper/c.txt", "C");
    put("src/.git/lfs/blob", "weights again");
    cr_assert_eq(symlink("a.txt", at("src/link.txt")), 0);
    uint64_t count = 0;
    cr_assert_eq(eng_copy_tree(at("src"), at("dst"), skip_b, &count, &err), 0, "%s", err.msg);
    cr_assert_eq(count, 4, "a, link (followed), sub/b, sub/deeper/c: %llu",
                 (unsigned long long)count);
    char *t = get("dst/a.txt");
    cr_assert_str_eq(t, "A");
    free(t);
    t = get("dst/link.txt");
    cr_assert_str_eq(t, "A");
    free(t);
    t = get("dst/sub/deeper/c.txt");
    cr_assert_str_eq(t, "C");
    free(t);
    t = get("dst/sub/b.txt");
    cr_assert_str_eq(t, "inner B", "skip is asked about the top folder's entries only");
    free(t);
    cr_assert_eq(access(at("dst/b.txt"), F_OK), -1, "skipped");
    cr_assert_eq(access(at("dst/.git"), F_OK), -1, ".git is never copied");
    cr_assert_eq(eng_copy_tree(at("nowhere"), at("dst"), NULL, &count, &err), ENG_EIO);
}

Test(fsutil, resolve_and_within)
{
    char real_root[PATH_MAX], got[PATH_MAX], want[PATH_MAX + 32];
    cr_assert_not_null(realpath(root, real_root));
    eng_error err = {0};
    cr_assert_eq(eng_mkdir_p(at("x"), &err), 0);
    cr_assert_eq(symlink(at("x"), at("lx")), 0);
    /* A link resolves; a missing tail is kept as written. */
    cr_assert_eq(eng_resolve_path(at("lx/not/yet"), got), 0);
    snprintf(want, sizeof want, "%s/x/not/yet", real_root);
    cr_assert_str_eq(got, want);
    cr_assert_eq(eng_resolve_path(at("lx"), got), 0);
    snprintf(want, sizeof want, "%s/x", real_root);
    cr_assert_str_eq(got, want);
    cr_assert(eng_path_within(want, real_root));
    cr_assert(eng_path_within(real_root, real_root));
    cr_assert(eng_path_within(real_root, "/"));
    snprintf(want, sizeof want, "%sx", real_root);
    cr_assert(!eng_path_within(want, real_root), "a sibling with a longer name is not inside");
}
