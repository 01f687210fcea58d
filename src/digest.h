/* digest.h - content digests of input events, kept with their dedupe record
 * (store.h) so that a known id arriving with other content is told apart from
 * a redelivery (DESIGN.md invariant 9).
 *
 * The digest is XXH3-128 over every field of the decoded event, each one
 * length-prefixed, the attributes sorted by key: the same event encoded
 * differently (another map order, JSON or Avro) has the same digest; any
 * change of a field changes it. Not a cryptographic hash: it detects
 * accidents (a reused event_id), not forgeries (credits are authenticated
 * separately). */
#ifndef FIDELIO_DIGEST_H
#define FIDELIO_DIGEST_H

#include <stdint.h>

#include "event.h"

#define DIGEST_LEN 16

/* The digest of a touchpoint. Returns 0, or -1 when out of memory. */
int digest_touchpoint(const touchpoint *ev, uint8_t out[DIGEST_LEN]);
/* The digest of a credit (its signature excluded: that is not content). */
void digest_credit(const credit_event *cr, uint8_t out[DIGEST_LEN]);

#endif
