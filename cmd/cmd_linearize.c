/*
 * cmd_linearize.c - `tttd linearize`: the option table and the summary around eng_linearize.
 */
#include "cmd/cmd_linearize.h"
#include "cmd/args.h"
#include "cmd/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/models/linearize.h"

typedef struct lin_args {
    const char *in, *out;
    eng_linearize_opts o;
} lin_args;

#define F(field) offsetof(lin_args, field)

static const cmd_arg lin_rows[] = {
    {.name = "IN_DIR", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL, .off = F(in),
     .help = "the softmax checkpoint: a pipeline folder or a bare transformer folder"},
    {.name = "OUT_DIR", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL, .off = F(out),
     .help = "where the TTT checkpoint goes, in IN_DIR's layout"},
    {.name = "map", .type = CMD_ARG_STR, .metavar = "MAP", .off = F(o.map),
     .flags = CMD_ARG_REQUIRED,
     .help = "which attention modules become TTT:\n"
             "  sd35-t5  the paper's map: attn2 of every dual-attention block and the joint "
             "attn of the last five blocks (18 of SD3.5-Medium's 37 modules)\n"
             "  all      every attn and attn2 (the fastest map)\n"
             "  a comma-separated list of module names, e.g. "
             "transformer_blocks.0.attn2,transformer_blocks.23.attn"},
    {.name = "seed", .type = CMD_ARG_U64, .def = "0", .metavar = "N", .off = F(o.seed),
     .help = "seed of the new weights' random initial values; the same seed gives the same "
             "files"},
    {.name = "force", .type = CMD_ARG_FLAG, .hi = 1, .off = F(o.force),
     .help = "write into OUT_DIR even if it exists and is not empty (same-named files are "
             "replaced; weight files in its transformer folder are removed first)"},
};

static const cmd_args_spec lin_spec = {
    .prog = "tttd linearize",
    .about = "Makes a TTT checkpoint from a softmax SD3 checkpoint: the attention modules the "
             "map names become Test-Time-Training modules. IN_DIR is a diffusers pipeline folder "
             "(model_index.json + transformer/ + ...) or a bare transformer folder (config.json "
             "+ *.safetensors, possibly sharded). OUT_DIR gets the same layout: every other file "
             "copied, transformer/config.json with a \"ttt\" map added, and the weights: every "
             "input tensor unchanged plus, per TTT module, <module>.w1 and .w2 [heads, d, d] "
             "(truncated normal, std 0.02) and .q_conv / .k_conv (depthwise 3x3, weight and bias "
             "uniform on [-1/3, 1/3]), in the transformer's weight dtype.",
    .rows = lin_rows,
    .n_rows = (int)(sizeof lin_rows / sizeof lin_rows[0]),
};

static void summary(FILE *out, const char *in, const char *dst, const eng_linearize_opts *o,
                    const eng_linearize_report *r)
{
    char a[32], b[32];
    const eng_transformer_config *c = &r->cfg;
    fprintf(out, "linearized %d of %d attention modules of %s (map %s, seed %" PRIu64 "):\n",
            r->num_modules, c->num_layers + c->num_dual_attention_layers, in, o->map, o->seed);
    for (int i = 0; i < r->num_modules; i++) {
        char name[64];
        eng_linearize_module_name(c, i, name, sizeof name, NULL, NULL);
        fprintf(out, "  %s\n", name);
    }
    fprintf(out, "new: %s tensors, %s parameters (%s)\n", cmd_fmt_count(r->new_tensors, a, sizeof a),
            cmd_fmt_count(r->new_params, b, sizeof b), eng_dtype_name(r->dtype));
    fprintf(out, "copied: %s tensors, %s parameters", cmd_fmt_count(r->copied_tensors, a, sizeof a),
            cmd_fmt_count(r->copied_params, b, sizeof b));
    fprintf(out, "; %d weight file%s written, %" PRIu64 " other file%s copied\n", r->weight_files,
            r->weight_files == 1 ? "" : "s", r->other_files, r->other_files == 1 ? "" : "s");
    fprintf(out, "output: %s\n", dst);
}

int cmd_linearize(int argc, char **argv, FILE *out, FILE *errout)
{
    lin_args a = {0};
    int rc = cmd_args_parse(&lin_spec, &a, argc, argv, out, errout);
    if (rc >= 0)
        return rc;

    eng_linearize_report rep;
    eng_error err = {0};
    if (eng_linearize(a.in, a.out, &a.o, &rep, &err) != 0)
        return cmd_engine_fail(errout, "linearize", NULL, &err);
    summary(out, a.in, a.out, &a.o, &rep);
    fflush(out);
    return 0;
}
