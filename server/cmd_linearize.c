/*
 * cmd_linearize.c - `tttd linearize`: argument parsing and the summary around eng_linearize.
 */
#include "server/cmd_linearize.h"
#include "server/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/models/linearize.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tttd linearize IN_DIR OUT_DIR --map MAP [--seed N] [--force]\n"
            "\n"
            "Makes a TTT checkpoint from a softmax SD3 checkpoint: the attention modules the map\n"
            "names become Test-Time-Training modules. IN_DIR is a diffusers pipeline folder\n"
            "(model_index.json + transformer/ + ...) or a bare transformer folder (config.json +\n"
            "*.safetensors, possibly sharded). OUT_DIR gets the same layout: every other file\n"
            "copied, transformer/config.json with a \"ttt\" map added, and the weights: every\n"
            "input tensor unchanged plus, per TTT module, <module>.w1 and .w2 [heads, d, d]\n"
            "(truncated normal, std 0.02) and .q_conv / .k_conv (depthwise 3x3, weight and bias\n"
            "uniform on [-1/3, 1/3]), in the transformer's weight dtype.\n"
            "\n"
            "  --map MAP    which attention modules become TTT (required):\n"
            "                 sd35-t5  the paper's map: attn2 of every dual-attention block\n"
            "                          and the joint attn of the last five blocks (18 of\n"
            "                          SD3.5-Medium's 37 modules)\n"
            "                 all      every attn and attn2 (the fastest map)\n"
            "                 a comma-separated list of module names, e.g.\n"
            "                 transformer_blocks.0.attn2,transformer_blocks.23.attn\n"
            "  --seed N     seed of the new weights' random initial values, 0 to 2^64-1\n"
            "               (default 0); the same seed gives the same files\n"
            "  --force      write into OUT_DIR even if it exists and is not empty (same-named\n"
            "               files are replaced; weight files in its transformer folder are\n"
            "               removed first)\n"
            "  --help       print this help\n");
}

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
    fprintf(out, "new: %s tensors, %s parameters (%s)\n", srv_cli_fmt_count(r->new_tensors, a, sizeof a),
            srv_cli_fmt_count(r->new_params, b, sizeof b), eng_dtype_name(r->dtype));
    fprintf(out, "copied: %s tensors, %s parameters", srv_cli_fmt_count(r->copied_tensors, a, sizeof a),
            srv_cli_fmt_count(r->copied_params, b, sizeof b));
    fprintf(out, "; %d weight file%s written, %" PRIu64 " other file%s copied\n", r->weight_files,
            r->weight_files == 1 ? "" : "s", r->other_files, r->other_files == 1 ? "" : "s");
    fprintf(out, "output: %s\n", dst);
}

int srv_cmd_linearize(int argc, char **argv, FILE *out, FILE *errout)
{
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    eng_linearize_opts o = {.map = NULL, .seed = 0, .force = 0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(out);
            return 0;
        }
        if (strncmp(a, "--map=", 6) == 0 || strncmp(a, "--seed=", 7) == 0) {
            val = strchr(a, '=') + 1;
        } else if (strcmp(a, "--map") == 0 || strcmp(a, "--seed") == 0) {
            if (i + 1 >= argc) {
                fprintf(errout, "tttd linearize: %s needs a value\n", a);
                usage(errout);
                return 2;
            }
            val = argv[++i];
        }
        if (strncmp(a, "--map", 5) == 0 && val) {
            o.map = val;
        } else if (strncmp(a, "--seed", 6) == 0 && val) {
            if (srv_cli_parse_u64(val, &o.seed) != 0) {
                fprintf(errout, "tttd linearize: --seed %s is not an integer in [0, 2^64-1]\n",
                        val);
                return 2;
            }
        } else if (strcmp(a, "--force") == 0) {
            o.force = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(errout, "tttd linearize: unknown option %s\n", a);
            usage(errout);
            return 2;
        } else if (npos == 2) {
            fprintf(errout, "tttd linearize: too many arguments (%s)\n", a);
            usage(errout);
            return 2;
        } else {
            pos[npos++] = a;
        }
    }
    if (npos < 2 || !o.map) {
        fprintf(errout, "tttd linearize: %s\n",
                npos == 0 ? "missing IN_DIR and OUT_DIR"
                : npos == 1 ? "missing OUT_DIR"
                            : "missing --map (sd35-t5, all, or module names)");
        usage(errout);
        return 2;
    }

    eng_linearize_report rep;
    eng_error err = {0};
    if (eng_linearize(pos[0], pos[1], &o, &rep, &err) != 0) {
        fprintf(errout, "tttd linearize: %s\n", err.msg);
        return 1;
    }
    summary(out, pos[0], pos[1], &o, &rep);
    fflush(out);
    return 0;
}
