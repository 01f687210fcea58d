/* registry.h - a namespace's rule-program registry (<prefix>program and
 * <prefix>stages in Redis, documented in store.h): whether a program may run
 * on the namespace, and the record that it did. */
#ifndef FIDELIO_REGISTRY_H
#define FIDELIO_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "program.h"
#include "store.h"

typedef enum registry_result {
    REGISTRY_OK,       /* the program may run; notes may hold warnings */
    REGISTRY_REFUSED,  /* it would orphan stored stages: err names them */
    REGISTRY_ERROR,    /* Redis failed or memory ran out: err says which */
} registry_result;

/* Check prog against the namespace of st: refuse it if it orphans a stage
 * the namespace may hold (neither a stage, nor a renamed_from, nor retired);
 * warn (a line in notes) when the namespace last ran the same version with
 * another digest. With record (only `fidelio run`), an accepted program is
 * recorded as the namespace's. Read-only without record. A namespace that
 * has profiles but no registry yet (written before this release) has its
 * profiles read for their stages (a note says so). */
registry_result registry_check(store *st, const program *prog, bool record, buf *notes, char *err, size_t errlen);

#endif
