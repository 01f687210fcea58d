/* cmd_encode.c - `fidelio encode`: JSON lines -> one Avro file per record, so
 * that other clients (kcat) can publish exactly what fidelio would. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "codec.h"

static const char help[] =
    "usage: fidelio encode -o DIR [--schema NAME] [--no-validate] [FILE|-]\n\n"
    "Encode each JSON line as Avro into DIR/NNNNNN.avro (NNNNNN = line number) and\n"
    "list the files with their Kafka key (the customer_id) in DIR/index.tsv.\n"
    "Publish them with any client, e.g. kcat -P -b BROKERS -t touchpoints -k KEY FILE.\n\n"
    "  -o, --output DIR      directory to write (created if missing)\n"
    "      --schema NAME     touchpoint (default), reward, stage-change or credit\n"
    "      --no-validate     skip the semantic checks (to build bad events for tests)\n"
    "  -h, --help            this help\n";

int cmd_encode(int argc, char **argv)
{
    static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"no-validate", no_argument, NULL, 'N'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = NULL, *input = "stdin";
    codec_schema schema = SCHEMA_TOUCHPOINT;
    int opt, validate = 1, rc = EXIT_USAGE;
    FILE *in = stdin;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); return EXIT_OK;
        case 'o': dir = optarg; break;
        case 'N': validate = 0; break;
        case 's': {
            int s = codec_schema_parse(optarg);
            if (s < 0) {
                fprintf(stderr, "fidelio encode: unknown schema '%s'\n", optarg);
                return EXIT_USAGE;
            }
            schema = (codec_schema)s;
            break;
        }
        default: fputs(help, stderr); return EXIT_USAGE;
        }
    }
    if (!dir || argc - optind > 1) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "fidelio encode: %s: %s\n", dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (optind < argc && strcmp(argv[optind], "-") != 0) {
        input = argv[optind];
        if (!(in = fopen(input, "r"))) {
            fprintf(stderr, "fidelio encode: %s: %s\n", input, strerror(errno));
            return EXIT_USAGE;
        }
    }
    char err[512], path[4096];
    codec *c = codec_new(SIZE_MAX, err, sizeof(err));
    codec_record *rec = calloc(1, sizeof(*rec));
    snprintf(path, sizeof(path), "%s/index.tsv", dir);
    FILE *index = fopen(path, "w");
    buf avro = {0};
    char *line = NULL;
    size_t cap = 0;
    long n;
    long long lineno = 0, written = 0, bad = 0;
    rc = EXIT_RUNTIME;
    if (!c || !rec || !index) {
        fprintf(stderr, "fidelio encode: %s\n", !c ? err : !rec ? "out of memory" : strerror(errno));
        goto out;
    }
    while ((n = codec_read_jsonl(in, &line, &cap, &lineno)) >= 0) {
        event_err e = codec_decode_json(schema, line, (size_t)n, rec, err, sizeof(err));
        if (e == EVENT_OK && validate && schema == SCHEMA_TOUCHPOINT)
            e = touchpoint_validate(&rec->tp, NULL, 0, err, sizeof(err));
        if (e == EVENT_OK)
            e = codec_encode_avro(c, schema, rec, &avro, err, sizeof(err));
        if (e != EVENT_OK) {
            fprintf(stderr, "%s:%lld: rejected (%s): %s\n", input, lineno, event_err_name(e), err);
            bad++;
            continue;
        }
        snprintf(path, sizeof(path), "%s/%06lld.avro", dir, lineno);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(avro.data, 1, avro.len, f) != avro.len || fclose(f) != 0) {
            fprintf(stderr, "fidelio encode: %s: %s\n", path, strerror(errno));
            goto out;
        }
        fprintf(index, "%06lld.avro\t%s\n", lineno, codec_record_key(rec));
        written++;
    }
    fprintf(stderr, "encode: %lld files written to %s, %lld lines rejected\n", written, dir, bad);
    rc = bad ? EXIT_RUNTIME : EXIT_OK;
out:
    if (index && fclose(index) != 0)
        rc = EXIT_RUNTIME;
    if (in != stdin)
        fclose(in);
    free(line);
    buf_free(&avro);
    if (rec)
        codec_record_free(rec);
    free(rec);
    codec_free(c);
    return rc;
}
