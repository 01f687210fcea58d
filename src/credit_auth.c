/* credit_auth.c - namespace and HMAC-SHA256 of credits (see credit_auth.h). */
#include "credit_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

const char *credit_verdict_name(credit_verdict v)
{
    switch (v) {
    case CREDIT_OK: return "ok";
    case CREDIT_FOREIGN_NAMESPACE: return "credit_foreign_namespace";
    case CREDIT_UNSIGNED: return "credit_unsigned";
    case CREDIT_BAD_SIGNATURE: return "credit_bad_signature";
    }
    return "credit_unknown";
}

static int put(buf *b, const void *p, size_t n)
{
    uint64_t len = n;
    return buf_append(b, &len, sizeof(len)) || buf_append(b, p, n);
}

static int put_str(buf *b, const char *s) { return put(b, s, strlen(s)); }
static int put_i64(buf *b, int64_t v) { return put(b, &v, sizeof(v)); }

/* The HMAC of cr (all fields but the signature), as lower-case hex in out
 * (at least 65 bytes). */
static int mac_hex(const credit_event *cr, const char *key, char *out)
{
    buf b = {0};
    int rc = put_str(&b, "fidelio-credit/1") || put_str(&b, cr->credit_id) || put_str(&b, cr->customer_id) ||
             put_str(&b, cr->source_customer_id) || put_str(&b, cr->rule_id) || put_i64(&b, cr->points) ||
             put_i64(&b, cr->referral) || put_str(&b, cr->source_event_id) || put_i64(&b, cr->occurred_at) ||
             put_str(&b, cr->reason) || put_str(&b, cr->program_version) || put_str(&b, cr->ns);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (rc == 0 && !HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)b.data, b.len, md, &mdlen))
        rc = -1;
    buf_free(&b);
    if (rc != 0 || mdlen != 32)
        return -1;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int credit_sign(credit_event *cr, const char *ns, const char *key)
{
    snprintf(cr->ns, sizeof(cr->ns), "%s", ns);
    cr->signature[0] = '\0';
    if (!*key)
        return 0;
    return mac_hex(cr, key, cr->signature);
}

credit_verdict credit_verify(const credit_event *cr, const char *ns, const char *key, char *why,
                             size_t whylen)
{
    if (strcmp(cr->ns, ns) != 0) {
        snprintf(why, whylen, "credit %s was produced for namespace '%s'; this instance is namespace '%s' "
                 "(redis.key_prefix)", cr->credit_id, cr->ns, ns);
        return CREDIT_FOREIGN_NAMESPACE;
    }
    if (!*key)
        return CREDIT_OK;
    if (!cr->signature[0]) {
        snprintf(why, whylen, "credit %s carries no signature; this namespace requires credits signed with "
                 "credits.hmac_key", cr->credit_id);
        return CREDIT_UNSIGNED;
    }
    char want[65];
    if (mac_hex(cr, key, want) != 0) {
        snprintf(why, whylen, "credit %s: computing its HMAC failed", cr->credit_id);
        return CREDIT_BAD_SIGNATURE;
    }
    if (strlen(cr->signature) != 64 || CRYPTO_memcmp(want, cr->signature, 64) != 0) {
        snprintf(why, whylen, "credit %s: the signature does not verify with this namespace's credits.hmac_key "
                 "(forged, altered, or signed with another key)", cr->credit_id);
        return CREDIT_BAD_SIGNATURE;
    }
    return CREDIT_OK;
}
