/* replay_order.c - the grouped hand-out order of a replay window (replay_order.h). */
#include "replay_order.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "buf.h"

/* A referral link: invitee's SIGNUP named referrer. */
typedef struct ref_link {
    char *invitee;    /* owned; NULL: a free slot */
    size_t ilen;
    char *referrer;   /* owned */
    size_t rlen;
} ref_link;

/* A customer of the window and its node in the union-find. */
typedef struct node_slot {
    const char *key;  /* borrowed (a message key or a link's referrer); NULL: free */
    size_t len;
    int node;
} node_slot;

struct replay_order {
    ref_link *links;  /* open addressing on the invitee (a pair once; an invitee may name several) */
    size_t lcap;      /* a power of two, or 0 */
    size_t nlinks;
};

replay_order *replay_order_new(void)
{
    return calloc(1, sizeof(replay_order));
}

void replay_order_free(replay_order *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->lcap; i++) {
        free(o->links[i].invitee);
        free(o->links[i].referrer);
    }
    free(o->links);
    free(o);
}

static size_t hash(const char *s, size_t len)
{
    return (size_t)XXH3_64bits(s, len);
}

static bool same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Double the link table (rehash); -1 when out of memory. */
static int grow_links(replay_order *o)
{
    size_t cap = o->lcap ? o->lcap * 2 : 1024;
    ref_link *t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < o->lcap; i++) {
        ref_link *l = &o->links[i];
        if (!l->invitee)
            continue;
        size_t k = hash(l->invitee, l->ilen) & (cap - 1);
        while (t[k].invitee)
            k = (k + 1) & (cap - 1);
        t[k] = *l;
    }
    free(o->links);
    o->links = t;
    o->lcap = cap;
    return 0;
}

int replay_order_refer(replay_order *o, const char *invitee, size_t ilen, const char *referrer, size_t rlen)
{
    if (o->lcap) {
        for (size_t k = hash(invitee, ilen) & (o->lcap - 1); o->links[k].invitee; k = (k + 1) & (o->lcap - 1))
            if (same(o->links[k].invitee, o->links[k].ilen, invitee, ilen) &&
                same(o->links[k].referrer, o->links[k].rlen, referrer, rlen))
                return 0; /* known */
    }
    if ((o->nlinks + 1) * 2 > o->lcap && grow_links(o) != 0)
        return -1;
    char *i = malloc(ilen + 1), *r = malloc(rlen + 1);
    if (!i || !r) {
        free(i);
        free(r);
        return -1;
    }
    memcpy(i, invitee, ilen);
    i[ilen] = '\0';
    memcpy(r, referrer, rlen);
    r[rlen] = '\0';
    size_t k = hash(invitee, ilen) & (o->lcap - 1);
    while (o->links[k].invitee)
        k = (k + 1) & (o->lcap - 1);
    o->links[k] = (ref_link){i, ilen, r, rlen};
    o->nlinks++;
    return 0;
}

/* The window's scratch: its customers (and their referrers) numbered. */
typedef struct window {
    node_slot *slots; /* open addressing, scap a power of two */
    size_t scap;
    int nnodes;
} window;

/* The node of a customer (created when new); -1 when out of memory. */
static int node_of(window *w, const char *key, size_t len)
{
    size_t k = hash(key, len) & (w->scap - 1);
    for (; w->slots[k].key; k = (k + 1) & (w->scap - 1))
        if (same(w->slots[k].key, w->slots[k].len, key, len))
            return w->slots[k].node;
    if ((size_t)w->nnodes * 2 >= w->scap) /* sized for every message and link: cannot fill */
        return -1;
    w->slots[k] = (node_slot){key, len, w->nnodes};
    return w->nnodes++;
}

/* Resource memberships of a window's messages: message i touches its
 * customer's state and, when it can credit, each referrer's. */
typedef struct memb {
    int node;         /* the resource: a customer's node */
    size_t msg;       /* the message */
    size_t next;      /* the next membership of the same resource (merge order), or NONE */
} memb;

#define NONE ((size_t)-1)

/* Append the memberships of message i: its customer, then each referrer its
 * SIGNUPs named (when it can credit). -1: out of memory. */
static int add_memberships(const replay_order *o, window *w, size_t i, int own, bool credits, const char *key,
                           size_t len, memb **ms, size_t *nm, size_t *cap)
{
    if (*nm == *cap) {
        memb *t = grow_array(*ms, cap, sizeof(memb), 1024);
        if (!t)
            return -1;
        *ms = t;
    }
    (*ms)[(*nm)++] = (memb){own, i, NONE};
    if (!credits || !o->lcap)
        return 0;
    for (size_t k = hash(key, len) & (o->lcap - 1); o->links[k].invitee; k = (k + 1) & (o->lcap - 1)) {
        const ref_link *l = &o->links[k];
        if (!same(l->invitee, l->ilen, key, len))
            continue;
        int r = node_of(w, l->referrer, l->rlen);
        if (r < 0)
            return -1;
        if (r == own)
            continue;
        if (*nm == *cap) {
            memb *t = grow_array(*ms, cap, sizeof(memb), 1024);
            if (!t)
                return -1;
            *ms = t;
        }
        (*ms)[(*nm)++] = (memb){r, i, NONE};
    }
    return 0;
}

int replay_order_window(replay_order *o, size_t n, const char *const *cust, const size_t *clen,
                        const unsigned char *credits, size_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = i;
    if (n == 0)
        return 0;
    window w = {0};
    size_t cap = 1024, nm = 0, mcap = 0, emitted = 0;
    while (cap < 2 * (n + o->nlinks) + 2)
        cap *= 2;
    w.scap = cap;
    w.slots = calloc(cap, sizeof(*w.slots));
    memb *ms = NULL;
    size_t *mfirst = malloc((n + 1) * sizeof(size_t)); /* message -> its first membership (the next message's ends it) */
    size_t *onext = malloc(n * sizeof(size_t));         /* message -> the next message of its customer, or NONE */
    size_t *ohead = NULL, *otail = NULL;                /* customer -> its first message not handed out / last */
    size_t *rhead = NULL, *rtail = NULL;                /* resource -> its first membership not handed out / last */
    size_t (*stack)[2] = malloc((n + 1) * sizeof(*stack)); /* (customer node, last message to hand out) */
    int *own = malloc(n * sizeof(int));
    int rc = -1;
    if (!w.slots || !mfirst || !onext || !stack || !own)
        goto out;
    for (size_t i = 0; i < n; i++) {
        mfirst[i] = nm;
        own[i] = -1;
        if (!cust[i]) /* no key: refused by the pipeline, touches no state; handed out in place */
            continue;
        if ((own[i] = node_of(&w, cust[i], clen[i])) < 0 ||
            add_memberships(o, &w, i, own[i], credits[i] != 0, cust[i], clen[i], &ms, &nm, &mcap) != 0)
            goto out;
    }
    mfirst[n] = nm;
    size_t nn = (size_t)(w.nnodes ? w.nnodes : 1);
    ohead = malloc(nn * sizeof(size_t));
    otail = malloc(nn * sizeof(size_t));
    rhead = malloc(nn * sizeof(size_t));
    rtail = malloc(nn * sizeof(size_t));
    if (!ohead || !otail || !rhead || !rtail)
        goto out;
    for (size_t k = 0; k < nn; k++)
        ohead[k] = otail[k] = rhead[k] = rtail[k] = NONE;
    for (size_t i = 0; i < n; i++) { /* chain each customer's messages and each resource's memberships */
        onext[i] = NONE;
        if (own[i] >= 0) {
            if (otail[own[i]] == NONE)
                ohead[own[i]] = i;
            else
                onext[otail[own[i]]] = i;
            otail[own[i]] = i;
        }
        for (size_t b = mfirst[i]; b < mfirst[i + 1]; b++) {
            int r = ms[b].node;
            if (rtail[r] == NONE)
                rhead[r] = b;
            else
                ms[rtail[r]].next = b;
            rtail[r] = b;
        }
    }
    /* customer by customer, in the order of their first message; a message
     * waits for every earlier message of each resource it touches: that
     * message's customer is handed out up to it first */
    for (size_t i0 = 0; i0 < n; i0++) {
        if (own[i0] < 0) {
            out[emitted++] = i0;
            continue;
        }
        if (ohead[own[i0]] == NONE || ohead[own[i0]] > i0)
            continue; /* handed out already (with its customer) */
        size_t sp = 0;
        stack[sp][0] = (size_t)own[i0];
        stack[sp++][1] = n;
        while (sp > 0) {
            size_t c = stack[sp - 1][0], last = stack[sp - 1][1];
            size_t m = ohead[c];
            if (m == NONE || (last != n && m > last)) {
                sp--;
                continue;
            }
            size_t blocker = NONE;
            for (size_t b = mfirst[m]; b < mfirst[m + 1] && blocker == NONE; b++)
                if (rhead[ms[b].node] != b)
                    blocker = ms[rhead[ms[b].node]].msg;
            if (blocker == NONE) {
                out[emitted++] = m;
                ohead[c] = onext[m];
                for (size_t b = mfirst[m]; b < mfirst[m + 1]; b++)
                    rhead[ms[b].node] = ms[b].next;
            } else { /* an earlier message (in the merge) of another customer first */
                if (sp > n)
                    goto out;
                stack[sp][0] = (size_t)own[blocker];
                stack[sp++][1] = blocker;
            }
        }
    }
    rc = emitted == n ? 0 : -1;
out:
    if (rc != 0)
        for (size_t i = 0; i < n; i++)
            out[i] = i;
    free(w.slots);
    free(ms);
    free(mfirst);
    free(onext);
    free(ohead);
    free(otail);
    free(rhead);
    free(rtail);
    free(stack);
    free(own);
    return rc;
}
