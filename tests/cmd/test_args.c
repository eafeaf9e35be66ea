/*
 * test_args.c - the argument-table parser (cmd/args.c): every value type with its bounds and
 * messages, --name=value, --no-name, short options, "--", positionals, required options, the
 * record of what was given, owned strings and lists, and the help made from the table.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/args.h"

typedef struct opts {
    const char *in, *extra, *name;
    int count, flag, on, choice, count_seen;
    int64_t bytes, ms;
    uint64_t seed;
    double scale;
    cmd_strlist tags;
} opts;

#define F(f) offsetof(opts, f)

static const cmd_arg rows[] = {
    {.name = "IN", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL, .off = F(in),
     .help = "the input"},
    {.name = "EXTRA", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL | CMD_ARG_OPTIONAL,
     .off = F(extra), .help = "more"},
    {.name = "name", .short_name = 'o', .type = CMD_ARG_STR, .metavar = "OUT", .off = F(name),
     .flags = CMD_ARG_REQUIRED, .help = "a name"},
    {.name = "count", .short_name = 'n', .type = CMD_ARG_INT, .def = "3", .lo = 1, .hi = 10,
     .metavar = "N", .off = F(count), .seen = CMD_ARG_SEEN(opts, count_seen), .help = "how many"},
    {.name = "flag", .type = CMD_ARG_FLAG, .hi = 1, .off = F(flag), .help = "a flag"},
    {.name = "on", .type = CMD_ARG_BOOL, .def = "true", .off = F(on), .help = "a boolean"},
    {.name = "choice", .type = CMD_ARG_ENUM, .def = "b", .choices = "a|b|c", .metavar = "C",
     .off = F(choice), .help = "a choice"},
    {.name = "bytes", .type = CMD_ARG_SIZE, .def = "1K", .lo = 64, .hi = 1 << 30,
     .metavar = "BYTES", .off = F(bytes), .help = "a size"},
    {.name = "wait", .type = CMD_ARG_DURATION, .def = "2", .lo = 0, .hi = 3600000, .unit = 1000,
     .env = "TEST_WAIT", .metavar = "SECONDS", .off = F(ms), .help = "a duration"},
    {.name = "seed", .type = CMD_ARG_U64, .metavar = "S", .off = F(seed), .help = "a seed"},
    {.name = "scale", .type = CMD_ARG_DOUBLE, .def = "7.5", .lo = 0, .hi = 100, .metavar = "G",
     .off = F(scale), .help = "a number"},
    {.name = "tag", .type = CMD_ARG_LIST, .metavar = "T", .off = F(tags), .help = "repeatable"},
};

static const cmd_args_spec spec = {
    .prog = "tttd test", .about = "A test.", .rows = rows, .n_rows = sizeof rows / sizeof rows[0]};

static char obuf[8192], ebuf[8192];

/* Parses "IN -o x ARGS..." style arguments (NULL-terminated); returns the status. */
static int parse(opts *o, const cmd_args_spec *s, const char *first, ...)
{
    char *argv[32] = {"test"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    memset(o, 0, sizeof *o);
    obuf[0] = ebuf[0] = '\0';
    FILE *out = fmemopen(obuf, sizeof obuf, "w"), *err = fmemopen(ebuf, sizeof ebuf, "w");
    int rc = cmd_args_parse(s, o, argc, argv, out, err);
    fclose(out), fclose(err);
    return rc;
}

Test(args, defaults_and_every_type)
{
    opts o;
    cr_assert_eq(parse(&o, &spec, "in", "-o", "x", NULL), -1, "%s", ebuf);
    cr_assert_str_eq(o.in, "in");
    cr_assert_null(o.extra);
    cr_assert_eq(o.count, 3);
    cr_assert_eq(o.count_seen, 0);
    cr_assert(o.on == 1 && o.choice == 1 && o.bytes == 1024 && o.ms == 2000 && o.scale == 7.5);

    cr_assert_eq(parse(&o, &spec, "--name=x", "--count", "10", "--flag", "--no-on", "--choice=C",
                       "--bytes", "2m", "--wait", "150ms", "--seed", "18446744073709551615",
                       "--scale", "0", "--tag", "a", "--tag=b", "in", "more", NULL),
                 -1, "%s", ebuf);
    cr_assert(o.count == 10 && o.count_seen == 1 && o.flag == 1 && o.on == 0 && o.choice == 2);
    cr_assert(o.bytes == 2 << 20 && o.ms == 150 && o.seed == UINT64_MAX && o.scale == 0);
    cr_assert(o.tags.n == 2 && !strcmp(o.tags.v[0], "a") && !strcmp(o.tags.v[1], "b"));
    cr_assert_str_eq(o.extra, "more");
    cmd_args_free(&spec, &o);
    cr_assert(o.tags.n == 0 && o.tags.v == NULL);

    cr_assert_eq(parse(&o, &spec, "-o", "x", "--on=off", "--wait=1m", "--", "-in", NULL), -1);
    cr_assert(o.on == 0 && o.ms == 60000);
    cr_assert_str_eq(o.in, "-in");
}

Test(args, bad_values_name_the_option_and_the_bounds)
{
    static const struct {
        const char *a, *v, *msg;
    } cases[] = {
        {"--count", "0", "tttd test: --count 0: expected an integer in [1, 10]"},
        {"-n", "11", "tttd test: -n 11: expected an integer in [1, 10]"},
        {"--count", "3x", "--count 3x: expected an integer in [1, 10]"},
        {"--choice", "d", "--choice d: expected a, b or c"},
        {"--on=maybe", NULL, "--on maybe: expected true or false"},
        {"--bytes", "63", "--bytes 63: expected a byte count (N, NK, NM or NG) in [64, 1073741824]"},
        {"--bytes", "1T", "--bytes 1T"},
        {"--wait", "2h", "--wait 2h: expected a duration (N, Nms, Ns or Nm) in [0, 3600] seconds"},
        {"--seed", "-1", "--seed -1: expected an integer in [0, 18446744073709551615]"},
        {"--seed", "18446744073709551616", "--seed 18446744073709551616"},
        {"--scale", "nan", "--scale nan: expected a number in [0, 100]"},
        {"--scale", "100.5", "--scale 100.5: expected a number in [0, 100]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opts o;
        cr_assert_eq(parse(&o, &spec, "in", "-o", "x", cases[i].a, cases[i].v, NULL), 2, "%zu", i);
        cr_assert(strstr(ebuf, cases[i].msg), "case %zu: %s", i, ebuf);
    }
}

Test(args, usage_errors)
{
    opts o;
    cr_assert_eq(parse(&o, &spec, "in", "-o", "x", "--bogus", NULL), 2);
    cr_assert(strstr(ebuf, "unknown option --bogus (use -- before an argument that starts with -)"),
              "%s", ebuf);
    cr_assert(strstr(ebuf, "usage: tttd test IN [EXTRA] -o OUT [-n N]"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "in", "-o", "x", "--no-count", NULL), 2);
    cr_assert(strstr(ebuf, "unknown option --no-count"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "in", "-o", "x", "--flag=1", NULL), 2);
    cr_assert(strstr(ebuf, "--flag takes no value"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "in", "-o", NULL), 2);
    cr_assert(strstr(ebuf, "-o needs a value (OUT)"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "-o", "x", NULL), 2);
    cr_assert(strstr(ebuf, "tttd test: missing IN\n"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "in", NULL), 2);
    cr_assert(strstr(ebuf, "tttd test: -o is required"), "%s", ebuf);
    cr_assert_eq(parse(&o, &spec, "a", "b", "c", "-o", "x", NULL), 2);
    cr_assert(strstr(ebuf, "too many arguments (c)"), "%s", ebuf);
    cr_assert_eq(obuf[0], '\0');
}

Test(args, help_from_the_table)
{
    opts o;
    cr_assert_eq(parse(&o, &spec, "--count", "0", "-h", NULL), 2, "values are checked in order");
    cr_assert_eq(parse(&o, &spec, "-h", "--count", "0", NULL), 0);
    cr_assert_eq(ebuf[0], '\0');
    const char *want[] = {"usage: tttd test IN [EXTRA] -o OUT [-n N] [--flag] [--[no-]on]",
                          "A test.",
                          "  -o, --name OUT",
                          "  -n, --count N",
                          "how many [default 3; 1 to 10]",
                          "a choice [default b; a, b or c]",
                          "a duration [default 2; 0 to 3600 s, or with ms/s/m;",
                          "env TEST_WAIT]",
                          "a seed [0 to 2^64-1]",
                          "  --help"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(obuf, want[i]), "help lacks \"%s\":\n%s", want[i], obuf);
    for (const char *p = obuf; *p; p++)
        cr_assert(*p != '\x01', "a non-breaking marker leaked:\n%s", obuf);
}

Test(args, owned_strings_and_the_value_conversion_alone)
{
    cmd_args_spec own = spec;
    own.own = 1;
    opts o = {0};
    char err[256];
    cr_assert_eq(cmd_args_defaults(&own, &o, err, sizeof err), 0, "%s", err);
    const cmd_arg *r = cmd_args_find(&own, "count", 5);
    cr_assert_not_null(r);
    cr_assert_eq(cmd_arg_set(&own, r, &o, "11", err, sizeof err), -1);
    cr_assert_str_eq(err, "expected an integer in [1, 10]");
    cr_assert_eq(o.count, 3, "a bad value leaves the field as it was");
    char text[] = "temporary";
    cr_assert_eq(cmd_arg_set(&own, cmd_args_find(&own, "name", 4), &o, text, err, sizeof err), 0);
    cr_assert_eq(cmd_arg_set(&own, cmd_args_find(&own, "tag", 3), &o, text, err, sizeof err), 0);
    text[0] = 'T';
    cr_assert_str_eq(o.name, "temporary");
    cr_assert_str_eq(o.tags.v[0], "temporary");
    cr_assert_null(cmd_args_find(&own, "IN", 2), "positionals are not options");
    cr_assert_not_null(cmd_args_find(&own, "wait", 4));
    char buf[16];
    cr_assert_str_eq(cmd_args_choice("a|bb|c", 1, buf, sizeof buf), "bb");
    cr_assert_str_eq(cmd_args_choice("a|bb|c", 3, buf, sizeof buf), "");
    cmd_args_free(&own, &o);
    cr_assert_null(o.name);
}
