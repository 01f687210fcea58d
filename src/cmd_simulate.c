/* cmd_simulate.c - `fidelio simulate`: the engine over JSON lines, in memory.
 * The dry run of a rule program, and the golden reference of the pipeline. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sim.h"

static const char help[] =
    "usage: fidelio simulate [-r RULES] [--profiles FILE] [OPTIONS] [FILE|-]\n\n"
    "Run the rule program over touchpoint events given as JSON lines (in file\n"
    "order) with no Kafka and no Redis, and print every output (RewardEvent and\n"
    "StageChangeEvent) as a JSON line, as subscribers would see them. Referral\n"
    "credits are applied to the referrer right after the event that earned them.\n"
    "An event id seen before for the same customer is ignored if its content is\n"
    "the same, and refused (event_id_conflict) if not, as the pipeline's dedupe\n"
    "would (event ids are unique per customer). Events the\n"
    "pipeline would send to the DLQ are reported on stderr with their line number.\n\n"
    "  -r, --rules FILE      rule program (default: rules.path of the configuration,\n"
    "                        else the built-in default program)\n"
    "      --profiles FILE   also write the final profiles as JSON lines, sorted by\n"
    "                        customer id ('-': to stdout after the outputs)\n" CLI_CONFIG_HELP;

static void print_output(void *opaque, const codec_record *rec)
{
    buf *b = opaque;
    buf_reset(b);
    if (codec_encode_json(rec->schema, rec, b) == EVENT_OK) {
        fputs(b->data, stdout);
        fputc('\n', stdout);
    }
}

static int write_profiles(const sim *s, const program *prog, FILE *out)
{
    size_t n;
    const profile **all = sim_profiles(s, &n);
    buf b = {0};
    int rc = all ? 0 : -1;
    for (size_t i = 0; all && i < n && rc == 0; i++) {
        buf_reset(&b);
        rc = profile_to_json(all[i], prog, &b);
        if (rc == 0 && (fputs(b.data, out) < 0 || fputc('\n', out) < 0))
            rc = -1;
    }
    free(all);
    buf_free(&b);
    return rc;
}

int cmd_simulate(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"rules", required_argument, NULL, 'r'},
                                             {"profiles", required_argument, NULL, 'P'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL, *profiles_path = NULL, *input = "stdin";
    int opt, rc = EXIT_USAGE;
    FILE *in = stdin;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'r': rules = optarg; break;
        case 'P': profiles_path = optarg; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "fidelio simulate: one input file at most\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    if ((rc = cli_load_program(&cfg, rules, &prog)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_USAGE;
    if (optind < argc && strcmp(argv[optind], "-") != 0) {
        input = argv[optind];
        if (!(in = fopen(input, "r"))) {
            fprintf(stderr, "fidelio simulate: %s: %s\n", input, strerror(errno));
            goto out_prog;
        }
    }
    rc = EXIT_RUNTIME;
    sim *s = sim_new(prog);
    buf out = {0};
    char err[512];
    long long invalid = 0;
    if (!s) {
        fprintf(stderr, "fidelio simulate: out of memory\n");
        goto out_sim;
    }
    if (sim_apply_jsonl(s, in, input, print_output, &out, &invalid, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio simulate: %s\n", err);
        goto out_sim;
    }
    if (profiles_path) {
        FILE *pf = strcmp(profiles_path, "-") ? fopen(profiles_path, "w") : stdout;
        if (!pf || write_profiles(s, prog, pf) != 0 || (pf != stdout && fclose(pf) != 0)) {
            fprintf(stderr, "fidelio simulate: %s: %s\n", profiles_path, strerror(errno));
            goto out_sim;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "fidelio simulate: stdout: %s\n", strerror(errno));
        goto out_sim;
    }
    const sim_stats *st = sim_get_stats(s);
    fprintf(stderr,
            "simulate: %lld events applied, %lld duplicates ignored, %lld invalid, %lld refused by the engine, "
            "%lld credits (%lld parked, %lld refused); %lld rewards, %lld stage changes (program %s)\n",
            st->events, st->duplicates, invalid, st->rejected, st->credits, st->credits_parked, st->credits_refused,
            st->rewards, st->stage_changes, prog->version);
    rc = EXIT_OK;
out_sim:
    buf_free(&out);
    sim_free(s);
    if (in != stdin)
        fclose(in);
out_prog:
    cli_program_free(prog);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
