/* fuzz_config.c - libFuzzer harness: the input as the YAML configuration
 * file (config_load), then the effective configuration printed as `fidelio
 * check` does. The file is an anonymous in-memory file (memfd), read through
 * /proc/self/fd: nothing is written to disk. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        if ((fd = memfd_create("fidelio-fuzz-config", 0)) < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        perror("memfd");
        abort();
    }
    char err[1024];
    char *sets[] = {"log.level=debug"};
    config cfg;
    if (config_load(&cfg, path, sets, 1, NULL, err, sizeof(err)) == 0) {
        buf dump = {0};
        char rules[4096];
        (void)config_dump(&cfg, &dump);
        (void)config_rules_path(&cfg, rules, sizeof(rules));
        buf_free(&dump);
    }
    config_free(&cfg);
    return 0;
}
