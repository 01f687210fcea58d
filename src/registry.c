/* registry.c - a program checked against, and recorded in, its namespace. */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

registry_result registry_check(store *st, const program *prog, bool record, buf *notes, char *err, size_t errlen)
{
    store_registry reg;
    buf orphans = {0}, refs = {0};
    const char **stored = NULL;
    registry_result res = REGISTRY_ERROR;
    if (store_registry_read(st, &reg, err, errlen) != 0)
        goto out;
    if (reg.nstages && !(stored = malloc(reg.nstages * sizeof(*stored)))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const char *p = reg.stages.data;
    for (size_t i = 0; i < reg.nstages; i++, p += strlen(p) + 1)
        stored[i] = p;
    int n = program_orphaned_stages(prog, stored, reg.nstages, &orphans);
    if (n < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (n > 0) {
        snprintf(err, errlen,
                 "rule program %s (version %s) would orphan %d stage(s) stored in this namespace: %s. Profiles at "
                 "them would lose their stage. Declare a renamed stage with renamed_from: OLD_NAME on its new "
                 "stage, or drop a stage deliberately with retired_stages: [\"ladder:stage\"]",
                 prog->source, prog->version, n, orphans.data);
        res = REGISTRY_REFUSED;
        goto out;
    }
    if (reg.has_program && !strcmp(reg.version, prog->version) && strcmp(reg.digest, prog->digest) != 0 &&
        buf_printf(notes,
                   "this namespace last ran rule program version %s with digest %s; this program has the same "
                   "version and digest %s: its outputs are indistinguishable by version (give an edited program "
                   "a new version)\n",
                   reg.version, reg.digest[0] ? reg.digest : "(none)", prog->digest) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (record) {
        if (program_stage_refs(prog, &refs) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (store_registry_write(st, prog->version, prog->digest, &refs, err, errlen) != 0)
            goto out;
    }
    res = REGISTRY_OK;
out:
    free(stored);
    buf_free(&orphans);
    buf_free(&refs);
    store_registry_free(&reg);
    return res;
}
