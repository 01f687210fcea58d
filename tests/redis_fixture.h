/* redis_fixture.h - a private redis-server for integration suites: started
 * on a unix socket in a fresh temp directory, stopped at exit. A suite calls
 * redis_fixture_start() from main before running; when redis-server is not
 * installed the process exits 77 (skip), as meson expects.
 *
 * Fidelio connects as the least-privilege ACL users of deploy/redis-acl.conf
 * (key prefix REDIS_FIXTURE_PREFIX): redis_url is the "run" user,
 * redis_url_ro the "tools" user. The default user stays open on the socket
 * for the tests' own pokes behind the store's back (redis_raw). */
#ifndef FIDELIO_REDIS_FIXTURE_H
#define FIDELIO_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char redis_dir[64];
#define REDIS_FIXTURE_PREFIX "fidelio:"
static char redis_url[160];    /* as the ACL user "fidelio" (run rules) */
static char redis_url_ro[160]; /* as the ACL user "fidelio-ro" (tools rules) */
static char redis_sock[96];
static pid_t redis_pid;
static pid_t redis_owner; /* Check forks every test: only the starting process stops the server */

static void redis_fixture_stop(void)
{
    if (redis_pid > 0 && getpid() == redis_owner) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", redis_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", redis_dir);
    }
}

/* Create (or redefine) ACL user with the rules of role in
 * deploy/redis-acl.conf, <prefix> replaced by prefix. 0 or -1 (printed). */
static int redis_fixture_acl_user(const char *role, const char *user, const char *pw, const char *prefix)
{
    char line[1024], rules[1024] = "";
    FILE *f = fopen(SOURCE_DIR "/deploy/redis-acl.conf", "r");
    if (!f) {
        perror(SOURCE_DIR "/deploy/redis-acl.conf");
        return -1;
    }
    size_t rl = strlen(role);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, role, rl) && line[rl] == ':')
            snprintf(rules, sizeof(rules), "%s", line + rl + 1);
    fclose(f);
    if (!rules[0]) {
        fprintf(stderr, "deploy/redis-acl.conf has no role '%s'\n", role);
        return -1;
    }
    const char *argv[64];
    char words[64][128];
    int argc = 0;
    argv[argc++] = "ACL";
    argv[argc++] = "SETUSER";
    argv[argc++] = user;
    argv[argc++] = "reset";
    argv[argc++] = "on";
    snprintf(words[0], sizeof(words[0]), ">%s", pw);
    argv[argc++] = words[0];
    int w = 1;
    for (char *save = NULL, *tok = strtok_r(rules, " \t\n", &save); tok && argc < 64 && w < 64;
         tok = strtok_r(NULL, " \t\n", &save), w++) {
        char *ph = strstr(tok, "<prefix>");
        if (ph)
            snprintf(words[w], sizeof(words[w]), "%.*s%s%s", (int)(ph - tok), tok, prefix, ph + 8);
        else
            snprintf(words[w], sizeof(words[w]), "%s", tok);
        argv[argc++] = words[w];
    }
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    redisReply *r = c && !c->err ? redisCommandArgv(c, argc, argv, NULL) : NULL;
    int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
    if (rc)
        fprintf(stderr, "ACL SETUSER %s failed: %s\n", user, r ? r->str : "no connection");
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return rc;
}

static void redis_fixture_start(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("SKIP: redis-server is not installed\n");
        exit(77);
    }
    strcpy(redis_dir, "/tmp/fidelio-redis-XXXXXX");
    if (!mkdtemp(redis_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", redis_dir);
    snprintf(redis_url, sizeof(redis_url), "unix://fidelio:fixture-run-pw@%s", redis_sock);
    snprintf(redis_url_ro, sizeof(redis_url_ro), "unix://fidelio-ro:fixture-tools-pw@%s", redis_sock);
    redis_owner = getpid();
    redis_pid = fork();
    if (redis_pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", redis_sock, "--dir", redis_dir, "--save",
               "", "--appendonly", "no", "--logfile", "redis.log", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        struct timeval tv = {1, 0};
        redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
        if (c && !c->err) {
            redisFree(c);
            atexit(redis_fixture_stop);
            if (redis_fixture_acl_user("run", "fidelio", "fixture-run-pw", REDIS_FIXTURE_PREFIX) != 0 ||
                redis_fixture_acl_user("tools", "fidelio-ro", "fixture-tools-pw", REDIS_FIXTURE_PREFIX) != 0)
                exit(1);
            return;
        }
        if (c)
            redisFree(c);
        usleep(50000);
    }
    fprintf(stderr, "redis-server did not start\n");
    redis_fixture_stop();
    exit(1);
}

/* A raw command on a fresh connection (tests poke Redis behind the store's back). */
static inline redisReply *redis_raw(const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    if (!c || c->err)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

#endif
