/* registry.c - a program checked against, and recorded in, its namespace. */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

/* The distinct stages found in the profiles of a namespace without registry. */
typedef struct scan_ctx {
    buf refs;        /* NUL-separated distinct "ladder:stage" */
    size_t nrefs;
    buf one;         /* scratch: one profile's refs */
    long long corrupt;
} scan_ctx;

static int add_ref(scan_ctx *c, const char *ref, size_t len)
{
    for (size_t off = 0; off < c->refs.len; off += strlen(c->refs.data + off) + 1)
        if (strlen(c->refs.data + off) == len && !memcmp(c->refs.data + off, ref, len))
            return 0;
    if (buf_append(&c->refs, ref, len) || buf_append(&c->refs, "", 1))
        return -1;
    c->nrefs++;
    return 0;
}

static int scan_profile(void *opaque, const char *data, size_t len)
{
    scan_ctx *c = opaque;
    buf_reset(&c->one);
    int rc = profile_stage_refs(data, len, &c->one);
    if (rc == -1) { /* a corrupt profile stops `run` when it is met; not this check's business */
        c->corrupt++;
        return 0;
    }
    if (rc != 0)
        return -1;
    for (const char *p = c->one.data, *end = p ? p + c->one.len : NULL; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || add_ref(c, p, (size_t)(nl - p)) != 0)
            return nl ? -1 : 0;
        p = nl + 1;
    }
    return 0;
}

/* A namespace whose profiles predate the registry: the stages its profiles
 * hold, appended to reg as if the registry listed them. */
static int scan_namespace(store *st, store_registry *reg, buf *notes, char *err, size_t errlen)
{
    scan_ctx c = {.refs = {0}};
    long long n = 0;
    int rc = store_scan_profiles(st, scan_profile, &c, &n, err, errlen);
    if (rc == 0 && n > 0) {
        rc = buf_append(&reg->stages, c.refs.data ? c.refs.data : "", c.refs.len) ||
             buf_printf(notes, "this namespace has no program registry yet: its %lld profile(s) were read for their "
                               "stages (%zu distinct%s)\n",
                        n, c.nrefs, c.corrupt ? ", some profiles unreadable" : "");
        if (rc)
            snprintf(err, errlen, "out of memory");
        else
            reg->nstages += c.nrefs;
    }
    buf_free(&c.refs);
    buf_free(&c.one);
    return rc ? -1 : 0;
}

registry_result registry_check(store *st, const program *prog, bool record, buf *notes, char *err, size_t errlen)
{
    store_registry reg;
    buf orphans = {0}, refs = {0};
    const char **stored = NULL;
    registry_result res = REGISTRY_ERROR;
    if (store_registry_read(st, &reg, err, errlen) != 0)
        goto out;
    if (!reg.has_program && scan_namespace(st, &reg, notes, err, errlen) != 0)
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
