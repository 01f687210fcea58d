/* cli.h - what every subcommand shares: -c FILE, --set k=v, -b BROKERS,
 * loading the configuration, and the subcommand entry points. */
#ifndef FIDELIO_CLI_H
#define FIDELIO_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>

#include "config.h"

#define EXIT_OK 0
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Options common to the subcommands that read the configuration. */
typedef struct cli_common {
    const char *config_path; /* -c; else $FIDELIO_CONFIG; else embedded defaults */
    char **sets;             /* --set k=v, in order (owned array, borrowed strings) */
    size_t nsets;
    char *brokers_set;       /* "kafka.bootstrap.servers=..." built from -b (owned) */
    char *log_format_set;    /* "log.format=..." built from --log-format (owned) */
} cli_common;

#define CLI_COMMON_SHORTOPTS "c:b:"
#define CLI_COMMON_LONGOPTS                                                                                           \
    {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 'S'},                              \
        {"brokers", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'},                          \
        {"log-format", required_argument, NULL, 'L'}
/* Help of the options every configuration-reading command takes. -b is
 * accepted by all of them (one set of options can be passed to every
 * command) but offered only by those that talk to Kafka (CLI_COMMON_HELP). */
#define CLI_CONFIG_HELP                                                                                               \
    "  -c, --config FILE     configuration file (default: $FIDELIO_CONFIG, else built-in defaults)\n"               \
    "      --set KEY=VALUE   override one setting (repeatable)\n"                                                    \
    "      --log-format F    text or json log lines on stderr (--set log.format=F)\n"                                \
    "  -h, --help            this help\n"
#define CLI_BROKERS_HELP "  -b, --brokers LIST    shorthand for --set kafka.bootstrap.servers=LIST\n"
/* For commands that talk to Kafka. */
#define CLI_COMMON_HELP CLI_BROKERS_HELP CLI_CONFIG_HELP

/* Handle opt if it is a common option: returns 1 if handled, 0 if not, -1 on error (printed). */
int cli_common_opt(cli_common *cc, int opt, const char *arg);
/* The default branch of a subcommand's option switch: a common option is
 * taken, anything else prints help on stderr. Returns 0, or -1 (exit 2). */
int cli_default_opt(cli_common *cc, int opt, const char *arg, const char *help);
/* Load the configuration (and check its kafka.* keys); prints the error and
 * returns EXIT_USAGE on failure, EXIT_OK otherwise. */
int cli_load_config(cli_common *cc, config *cfg);
void cli_common_free(cli_common *cc);

struct program;
/* Load the rule program: path if given, else cfg's rules.path, else the
 * built-in default. Prints the error and returns EXIT_USAGE on failure; on
 * success *out is the caller's (cli_program_free). */
int cli_load_program(const config *cfg, const char *path, struct program **out);
void cli_program_free(struct program *prog);
/* After a subcommand's options: refuse a leftover argument, load the
 * configuration and, when prog is not NULL, the rule program (rules or the
 * configured/built-in one). On EXIT_OK cfg and *prog are the caller's; on
 * failure the error is printed, nothing is left to free and the exit code
 * (EXIT_USAGE) is returned. */
int cli_setup(cli_common *cc, const char *cmd, int argc, char **argv, const char *rules, config *cfg,
              struct program **prog);

/* Set by SIGINT/SIGTERM handlers installed with cli_install_signals(). */
extern volatile sig_atomic_t cli_stop;
void cli_install_signals(void);
/* Set by SIGHUP once cli_install_hup() ran (`run` only: a service must not
 * die of a reload request; the pipeline reloads the rule program and clears it). */
extern volatile sig_atomic_t cli_hup;
void cli_install_hup(void);

int cmd_check(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_consume(int argc, char **argv);
int cmd_dev_kafka(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_offsets(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);

#endif
