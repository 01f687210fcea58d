/* redis_fixture.h - a private redis-server for integration suites: started
 * on a unix socket in a fresh temp directory, stopped at exit. A suite calls
 * redis_fixture_start() from main before running; when redis-server is not
 * installed the process exits 77 (skip), as meson expects. */
#ifndef FIDELIO_REDIS_FIXTURE_H
#define FIDELIO_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char redis_dir[64];
static char redis_url[128];
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
    snprintf(redis_url, sizeof(redis_url), "unix://%s", redis_sock);
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
