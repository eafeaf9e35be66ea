/*
 * main.c - the tttd binary: parses the subcommand and hands over to it.
 *
 *   tttd serve      the HTTP daemon
 *   tttd generate   offline text-to-image, written to PNG/JPEG files
 *   tttd bench      time the engine (a transformer forward or a denoising loop)
 *   tttd linearize  softmax checkpoint -> TTT checkpoint (weight inheritance)
 *   tttd info       a model folder's components, configs, parameter counts
 *   tttd tokenize   a prompt's token ids under each of a model's tokenizers
 */
#include "cmd/cmd_bench.h"
#include "cmd/cmd_generate.h"
#include "cmd/cmd_info.h"
#include "cmd/cmd_linearize.h"
#include "cmd/cmd_serve.h"
#include "cmd/cmd_tokenize.h"
#include "api/metadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct command {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* NULL: not built yet */
} command;

static int run_info(int argc, char **argv)
{
    return cmd_info(argc, argv, stdout, stderr);
}

static int run_bench(int argc, char **argv)
{
    return cmd_bench(argc, argv, stdout, stderr);
}

static int run_linearize(int argc, char **argv)
{
    return cmd_linearize(argc, argv, stdout, stderr);
}

static int run_tokenize(int argc, char **argv)
{
    return cmd_tokenize(argc, argv, stdout, stderr);
}

static int run_serve(int argc, char **argv)
{
    return cmd_serve(argc, argv, stdout, stderr);
}

static int run_generate(int argc, char **argv)
{
    return cmd_generate(argc, argv, stdout, stderr);
}

static const command commands[] = {
    {"serve", "run the HTTP daemon", run_serve},
    {"generate", "generate images offline and write them to files", run_generate},
    {"bench", "time the engine", run_bench},
    {"linearize", "make a TTT checkpoint from a softmax one", run_linearize},
    {"info", "print a model folder's components, configs and parameter counts", run_info},
    {"tokenize", "print a prompt's token ids under each of a model's tokenizers", run_tokenize},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tttd COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].help,
                commands[i].run ? "" : " (not yet available)");
    fprintf(f, "\n`tttd COMMAND --help` describes a command's options.\n");
}

/*
 * libgomp reads OMP_WAIT_POLICY once, when it is loaded (before main). Its default lets idle
 * threads spin after each parallel region; a small model runs hundreds of short regions a
 * picture, and on 2 cores the spinning thread took the core from the one doing the work
 * (the embedded model: 750 ms a picture against 552 ms passive, median of 10; large forwards
 * gain a little too). So, unless the environment already chose, tttd sets it to passive and
 * runs itself once more (execv keeps the pid, the arguments and the rest of the environment;
 * if that fails, it carries on as it is).
 */
static void prefer_passive_openmp(char **argv)
{
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") || setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    prefer_passive_openmp(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tttd %s\n", TTTD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (!commands[i].run) {
            fprintf(stderr, "tttd: '%s' is not available in this build yet (see README, Status)\n",
                    commands[i].name);
            return 2;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "tttd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
