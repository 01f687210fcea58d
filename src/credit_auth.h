/* credit_auth.h - credits carry their namespace and an HMAC (DESIGN.md
 * invariant 6): an instance applies only credits produced for its own
 * namespace by an instance holding the namespace's key.
 *
 * The namespace of a credit is the producing instance's redis.key_prefix
 * (what isolates one namespace's state from another's). The signature is
 * HMAC-SHA256, lower-case hex, keyed by credits.hmac_key, over every field of
 * the credit but the signature itself, each length-prefixed, namespace
 * included: a credit cannot be moved to another namespace or altered without
 * the key. */
#ifndef FIDELIO_CREDIT_AUTH_H
#define FIDELIO_CREDIT_AUTH_H

#include <stddef.h>

#include "event.h"

/* Why a credit is refused; the names are the DLQ's `error` header. */
typedef enum credit_verdict {
    CREDIT_OK,
    CREDIT_FOREIGN_NAMESPACE, /* credit_foreign_namespace: produced for another namespace */
    CREDIT_UNSIGNED,          /* credit_unsigned: no signature while this instance has a key */
    CREDIT_BAD_SIGNATURE,     /* credit_bad_signature: the signature does not verify with the key */
} credit_verdict;

/* Stable lower-case name of a verdict. */
const char *credit_verdict_name(credit_verdict v);

/* Set cr's namespace and sign it with key (an empty key: no signature).
 * Returns 0, or -1 when libcrypto fails. */
int credit_sign(credit_event *cr, const char *ns, const char *key);

/* Check that cr was produced for ns and (when key is not empty)
 * signed with key; why says what is wrong. */
credit_verdict credit_verify(const credit_event *cr, const char *ns, const char *key, char *why,
                             size_t whylen);

#endif
