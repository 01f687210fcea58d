/* cmd_gen.c - `fidelio gen`: a deterministic touchpoint stream of an
 * omnichannel retailer, for benchmarks and load tests, written as Avro to a
 * topic or as JSON lines.
 *
 * The model, in short: customers' activity follows a Zipf-Mandelbrot law
 * (weight of the customer of rank k: 1/(k+1+q)^s, q = customers/100), so a
 * few customers are busy and most come now and then (--skew 0: every customer
 * in turn, for memory measurements over distinct customers); a customer's first event
 * is a SIGNUP; a share of new customers are referred: the referrer (a
 * customer who signed up before) sends a REFERRAL naming them, they sign up
 * with referred_by and make a first purchase; refunds take back part or all
 * of the customer's latest order. Event times are spread evenly over --days
 * days ending at --end (default: the start of the current UTC day), so every
 * event lies in the past and the same options give the same bytes. Only
 * integer arithmetic is used after the activity table is built. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "event.h"
#include "stream.h"
#include "timeutil.h"

static const char help[] =
    "usage: fidelio gen [--customers N] [--events M] [--seed S] [--days D] [--referrals R]\n"
    "                   [--skew S] [--end TIME] (-t TOPIC | -o FILE) [OPTIONS]\n\n"
    "Generate a deterministic stream of touchpoints of an omnichannel retailer:\n"
    "every event type, Zipf-like customer activity, referrals between real\n"
    "customers (REFERRAL, then the invitee's SIGNUP with referred_by, then their\n"
    "first PURCHASE), refunds of earlier orders. Event times are spread over D\n"
    "days ending at TIME, always in the past. Every event is validated before it\n"
    "is written. The same options give byte-identical output.\n\n"
    "  -n, --customers N     customers (default 100000)\n"
    "  -m, --events M        events (default 1000000)\n"
    "  -s, --seed S          random seed (default 1)\n"
    "  -d, --days D          days of event time (default 30)\n"
    "  -r, --referrals R     share of new customers who sign up through a\n"
    "                        referral, 0..1 (default 0.1)\n"
    "      --skew S          Zipf exponent of customer activity (default 1.0); 0: every\n"
    "                        customer in turn (M >= N: each of the N customers appears)\n"
    "      --end TIME        end of event time, ISO-8601 or epoch ms (default: the\n"
    "                        start of the current UTC day)\n"
    "  -t, --topic TOPIC     write Avro to TOPIC (idempotent producer, batched)\n"
    "  -o, --output FILE     write JSON lines to FILE ('-': standard output)\n"
    "  -q, --quiet           no progress or summary on stderr\n" CLI_COMMON_HELP;

/* xoshiro256** seeded by splitmix64: fast, and the same sequence everywhere. */
typedef struct gen_rng {
    uint64_t s[4];
} gen_rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(gen_rng *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0 (the modulo bias is far below what matters here). */
static uint64_t rng_below(gen_rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(gen_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo + 1));
}

/* What the generator remembers of one customer. */
typedef struct gen_customer {
    uint8_t signed_up;      /* a SIGNUP was generated */
    uint8_t completeness;   /* last profile completeness, in percent */
    uint32_t order_seq;     /* event number of the latest order (valid if order_left > 0) */
    int64_t order_left;     /* cents of the latest order not yet refunded */
    int64_t order_at;       /* event time of the latest order */
} gen_customer;

/* Options of one run. */
typedef struct gen_opts {
    long long customers;
    long long events;
    uint64_t seed;
    long long days;
    double referrals;
    double skew;
    int64_t end_ms;
} gen_opts;

/* The generator: options, random state, activity table and customers. */
typedef struct gen {
    gen_opts o;
    gen_rng rng;
    uint64_t *cdf;          /* cumulative activity weights, scaled to integers, by rank */
    gen_customer *cust;     /* by index (= rank: customer 0 is the busiest) */
    uint32_t *signed_up;    /* indexes of customers who signed up, in order */
    long long nsigned;
    int64_t start_ms, span_ms;
    long long pending_invitee; /* -1, or the invitee whose SIGNUP/first PURCHASE comes next */
    long long pending_referrer;
    int pending_step;       /* 1: the invitee's SIGNUP is next; 2: their first PURCHASE */
    long long by_type[EVENT_TYPE_COUNT];
    long long referrals;    /* referred signups generated */
    long long round_robin;  /* next customer with --skew 0 */
} gen;

/* Orders older than this are not refunded (the rule program keeps order
 * records for 400 days by default). */
#define GEN_REFUND_MAX_AGE_MS (365 * TIME_MS_PER_DAY)

static int gen_init(gen *g, const gen_opts *o, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    g->o = *o;
    uint64_t x = o->seed;
    for (int i = 0; i < 4; i++)
        g->rng.s[i] = splitmix64(&x);
    size_t n = (size_t)o->customers;
    g->cdf = malloc(n * sizeof(*g->cdf));
    g->cust = calloc(n, sizeof(*g->cust));
    g->signed_up = malloc(n * sizeof(*g->signed_up));
    if (!g->cdf || !g->cust || !g->signed_up) {
        snprintf(err, errlen, "out of memory for %lld customers", o->customers);
        return -1;
    }
    /* Weights as doubles, then fixed point: sampling needs integers only. */
    double q = (double)o->customers / 100.0, total = 0;
    for (size_t k = 0; k < n; k++)
        total += 1.0 / pow((double)k + 1.0 + q, o->skew);
    double acc = 0, scale = 9.0e15 / total;
    for (size_t k = 0; k < n; k++) {
        acc += 1.0 / pow((double)k + 1.0 + q, o->skew);
        g->cdf[k] = (uint64_t)(acc * scale);
    }
    g->cdf[n - 1] = (uint64_t)9.0e15;
    g->span_ms = o->days * TIME_MS_PER_DAY;
    g->start_ms = o->end_ms - g->span_ms;
    g->pending_invitee = -1;
    return 0;
}

static void gen_free(gen *g)
{
    free(g->cdf);
    free(g->cust);
    free(g->signed_up);
}

/* A customer drawn by activity; with skew 0 every customer in turn. */
static long long gen_pick(gen *g)
{
    if (g->o.skew == 0)
        return g->round_robin++ % g->o.customers;
    uint64_t u = rng_below(&g->rng, g->cdf[g->o.customers - 1]);
    size_t lo = 0, hi = (size_t)g->o.customers - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (long long)lo;
}

static void cust_id(long long idx, char *out, size_t outlen)
{
    snprintf(out, outlen, "cust-%07lld", idx);
}

static const char *pick(gen_rng *r, const char *const *v, size_t n)
{
    return v[rng_below(r, n)];
}
#define PICK(r, arr) pick((r), (arr), sizeof(arr) / sizeof((arr)[0]))

static int add_attr(touchpoint *ev, const char *k, const char *v)
{
    return touchpoint_add_attr(ev, k, strlen(k), v, strlen(v)) == EVENT_OK ? 0 : -1;
}

/* Basket value in cents: mostly everyday baskets, a tail of large ones. */
static int64_t basket_cents(gen_rng *r)
{
    uint64_t b = rng_below(r, 100);
    if (b < 40)
        return rng_range(r, 499, 2999);
    if (b < 75)
        return rng_range(r, 3000, 9999);
    if (b < 95)
        return rng_range(r, 10000, 39999);
    return rng_range(r, 40000, 199999);
}

static void make_signup(gen *g, touchpoint *ev, long long c, long long referrer)
{
    static const char *const ch[] = {"web", "app", "store", "store", "app"};
    ev->type = EVENT_SIGNUP;
    str_copy(ev->channel, sizeof(ev->channel), PICK(&g->rng, ch));
    ev->payload.signup.has_referred_by = referrer >= 0;
    if (referrer >= 0)
        cust_id(referrer, ev->payload.signup.referred_by, sizeof(ev->payload.signup.referred_by));
    g->cust[c].signed_up = 1;
    g->signed_up[g->nsigned++] = (uint32_t)c;
}

static void make_purchase(gen *g, touchpoint *ev, long long c, long long seq)
{
    static const char *const ch[] = {"store", "store", "store", "store", "web", "web", "web", "app", "app", "partner"};
    gen_customer *gc = &g->cust[c];
    ev->type = EVENT_PURCHASE;
    str_copy(ev->channel, sizeof(ev->channel), PICK(&g->rng, ch));
    snprintf(ev->payload.purchase.order_id, sizeof(ev->payload.purchase.order_id), "o-%" PRIu64 "-%lld", g->o.seed,
             seq);
    ev->payload.purchase.amount_cents = basket_cents(&g->rng);
    str_copy(ev->payload.purchase.currency, sizeof(ev->payload.purchase.currency), "EUR");
    if (strcmp(ev->channel, "store") == 0) {
        ev->payload.purchase.has_store_id = true;
        snprintf(ev->payload.purchase.store_id, sizeof(ev->payload.purchase.store_id), "store-%03d",
                 (int)rng_below(&g->rng, 120));
    }
    gc->order_seq = (uint32_t)seq;
    gc->order_left = ev->payload.purchase.amount_cents;
    gc->order_at = ev->occurred_at;
}

/* Fill ev with event number seq (its time is already set). Returns 0, or -1
 * when memory runs out (attributes). */
static int gen_event(gen *g, touchpoint *ev, long long seq)
{
    static const char *const features[] = {"catalog", "scan-and-go", "wallet", "wishlist", "store-locator", "offers"};
    static const char *const networks[] = {"instagram", "facebook", "tiktok", "pinterest", "x"};
    static const char *const rewards[] = {"VOUCHER-5", "VOUCHER-10", "FREE-DELIVERY", "GIFT-BAG"};
    static const int64_t costs[] = {100, 250, 500, 1000};
    char id[EVENT_ID_MAX + 1];
    long long c;
    if (g->pending_invitee >= 0) {
        c = g->pending_invitee;
        if (g->pending_step == 1) {
            make_signup(g, ev, c, g->pending_referrer);
            g->referrals++;
            g->pending_step = 2;
        } else {
            make_purchase(g, ev, c, seq);
            g->pending_invitee = -1;
        }
    } else {
        c = gen_pick(g);
        gen_customer *gc = &g->cust[c];
        if (!gc->signed_up) {
            /* A new customer: referred by someone who signed up before, or not. */
            if (g->nsigned > 0 && (double)rng_below(&g->rng, 1u << 30) < g->o.referrals * (double)(1u << 30)) {
                long long referrer = g->o.skew == 0 ? c : gen_pick(g); /* round robin: keep the turn */
                if (!g->cust[referrer].signed_up)
                    referrer = g->signed_up[rng_below(&g->rng, (uint64_t)g->nsigned)];
                g->pending_invitee = c;
                g->pending_referrer = referrer;
                g->pending_step = 1;
                ev->type = EVENT_REFERRAL;
                str_copy(ev->channel, sizeof(ev->channel), rng_below(&g->rng, 2) ? "app" : "web");
                ev->payload.referral.has_invitee_id = true;
                cust_id(c, ev->payload.referral.invitee_id, sizeof(ev->payload.referral.invitee_id));
                c = referrer;
            } else {
                make_signup(g, ev, c, -1);
            }
        } else {
            uint64_t k = rng_below(&g->rng, 100);
            if (k >= 86 && k < 93 && !(gc->order_left > 0 && ev->occurred_at - gc->order_at < GEN_REFUND_MAX_AGE_MS))
                k = 40; /* nothing to refund: a purchase instead */
            if (k < 38) {
                ev->type = EVENT_APP_USE;
                str_copy(ev->channel, sizeof(ev->channel), "app");
                ev->payload.app_use.session_seconds = (int32_t)rng_range(&g->rng, 5, 1800);
                if (rng_below(&g->rng, 4)) {
                    ev->payload.app_use.has_feature = true;
                    str_copy(ev->payload.app_use.feature, sizeof(ev->payload.app_use.feature),
                             PICK(&g->rng, features));
                }
            } else if (k < 66) {
                make_purchase(g, ev, c, seq);
                snprintf(id, sizeof(id), "%d", (int)rng_range(&g->rng, 1, 12));
                if (add_attr(ev, "basket_items", id) != 0)
                    return -1;
                if (rng_below(&g->rng, 10) == 0 && add_attr(ev, "campaign", "seasonal-sale") != 0)
                    return -1;
            } else if (k < 75) {
                ev->type = EVENT_SOCIAL_SHARE;
                str_copy(ev->channel, sizeof(ev->channel), "social");
                str_copy(ev->payload.social_share.network, sizeof(ev->payload.social_share.network),
                         PICK(&g->rng, networks));
                if (rng_below(&g->rng, 2)) {
                    ev->payload.social_share.has_content_id = true;
                    snprintf(ev->payload.social_share.content_id, sizeof(ev->payload.social_share.content_id),
                             "product-%05d", (int)rng_below(&g->rng, 20000));
                }
            } else if (k < 81) {
                ev->type = EVENT_PROFILE_UPDATE;
                str_copy(ev->channel, sizeof(ev->channel), rng_below(&g->rng, 3) ? "web" : "call_center");
                int step = (int)rng_range(&g->rng, 10, 40);
                gc->completeness = (uint8_t)(gc->completeness + step > 100 ? 100 : gc->completeness + step);
                ev->payload.profile_update.completeness = gc->completeness / 100.0;
            } else if (k < 83) {
                ev->type = EVENT_NEWSLETTER_OPT_IN;
                str_copy(ev->channel, sizeof(ev->channel), rng_below(&g->rng, 2) ? "email" : "web");
            } else if (k < 86) {
                /* An invitation that does not (yet) turn into a customer. */
                ev->type = EVENT_REFERRAL;
                str_copy(ev->channel, sizeof(ev->channel), "app");
                ev->payload.referral.has_invitee_id = rng_below(&g->rng, 2) == 0;
                if (ev->payload.referral.has_invitee_id)
                    snprintf(ev->payload.referral.invitee_id, sizeof(ev->payload.referral.invitee_id),
                             "prospect-%" PRIu64 "-%lld", g->o.seed, seq);
            } else if (k < 93) {
                static const char *const ch[] = {"store", "web", "call_center"};
                ev->type = EVENT_REFUND;
                str_copy(ev->channel, sizeof(ev->channel), PICK(&g->rng, ch));
                snprintf(ev->payload.refund.order_id, sizeof(ev->payload.refund.order_id), "o-%" PRIu64 "-%u",
                         g->o.seed, gc->order_seq);
                int64_t amt = rng_below(&g->rng, 5) < 3 || gc->order_left < 2
                                  ? gc->order_left
                                  : rng_range(&g->rng, 1, gc->order_left - 1);
                ev->payload.refund.amount_cents = amt;
                gc->order_left -= amt;
            } else {
                static const char *const ch[] = {"store", "app", "web"};
                ev->type = EVENT_REDEMPTION;
                str_copy(ev->channel, sizeof(ev->channel), PICK(&g->rng, ch));
                snprintf(ev->payload.redemption.redemption_id, sizeof(ev->payload.redemption.redemption_id),
                         "r-%" PRIu64 "-%lld", g->o.seed, seq);
                str_copy(ev->payload.redemption.reward_code, sizeof(ev->payload.redemption.reward_code),
                         PICK(&g->rng, rewards));
                ev->payload.redemption.cost_points = costs[rng_below(&g->rng, 4)];
            }
        }
    }
    cust_id(c, ev->customer_id, sizeof(ev->customer_id));
    snprintf(ev->event_id, sizeof(ev->event_id), "ev-%" PRIu64 "-%lld", g->o.seed, seq);
    g->by_type[ev->type]++;
    return 0;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

/* Generate every event into a producer or a file. Returns 0, or -1 with err. */
static int gen_run(gen *g, const config *cfg, const char *topic, FILE *out, const char *out_name, int progress,
                   char *err, size_t errlen)
{
    stream_producer p;
    codec_record *rec = calloc(1, sizeof(*rec));
    buf json = {0};
    char why[512], cerr[512];
    int rc = -1, have_producer = 0;
    double start = clock_mono_s(), last = start;
    event_limits lim = {.max_clock_skew_ms = cfg->max_clock_skew_ms};
    if (!rec) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rec->schema = SCHEMA_TOUCHPOINT;
    if (topic) {
        if (stream_producer_open(&p, cfg, topic, SCHEMA_TOUCHPOINT, err, errlen) != 0)
            goto out;
        have_producer = 1;
    }
    for (long long i = 0; i < g->o.events && !cli_stop; i++) {
        touchpoint *ev = &rec->tp;
        touchpoint_clear(ev);
        ev->occurred_at = g->start_ms + (int64_t)((__int128)g->span_ms * i / g->o.events);
        if (gen_event(g, ev, i) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        event_err e = EVENT_OK;
        if (have_producer) {
            int sr = stream_producer_send(&p, rec, &e, why, sizeof(why), err, errlen);
            if (sr < 0)
                goto out;
            if (sr > 0) {
                snprintf(err, errlen, "generated event %lld is invalid (%s): %s", i, event_err_name(e), why);
                goto out;
            }
        } else {
            e = touchpoint_validate(ev, &lim, (int64_t)time(NULL) * 1000, why, sizeof(why));
            if (e != EVENT_OK) {
                snprintf(err, errlen, "generated event %lld is invalid (%s): %s", i, event_err_name(e), why);
                goto out;
            }
            buf_reset(&json);
            if (codec_encode_json(SCHEMA_TOUCHPOINT, rec, &json) != EVENT_OK || buf_puts(&json, "\n") != 0) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            if (fwrite(json.data, 1, json.len, out) != json.len) {
                snprintf(err, errlen, "%s: %s", out_name, strerror(errno));
                goto out;
            }
        }
        if (progress && (i & 4095) == 0 && clock_mono_s() - last >= 2.0) {
            last = clock_mono_s();
            fprintf(stderr, "gen: %lld events\n", i);
        }
    }
    if (cli_stop) {
        snprintf(err, errlen, "interrupted");
        goto out;
    }
    rc = 0;
out:
    if (have_producer) {
        long long sent = 0;
        if (stream_producer_close(&p, &sent, NULL, cerr, sizeof(cerr)) != 0 && rc == 0) {
            snprintf(err, errlen, "%s", cerr);
            rc = -1;
        }
        if (rc == 0 && sent != g->o.events) {
            snprintf(err, errlen, "%lld of %lld events acknowledged", sent, g->o.events);
            rc = -1;
        }
    }
    if (progress && rc == 0) {
        double s = clock_mono_s() - start;
        fprintf(stderr, "gen: %lld events to %s in %.2f s (%.0f events/s); %lld customers signed up, %lld referred;",
                g->o.events, topic ? topic : out_name, s, s > 0 ? g->o.events / s : 0.0, g->nsigned, g->referrals);
        for (int t = 0; t < EVENT_TYPE_COUNT; t++)
            fprintf(stderr, " %s %lld", event_type_name((event_type)t), g->by_type[t]);
        fputc('\n', stderr);
    }
    codec_record_free(rec);
    free(rec);
    buf_free(&json);
    return rc;
}

/* If the user did not set kafka.KEY, set it (throughput defaults for a bulk load). */
static int default_kafka(config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->kafka_count; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0)
            return 0;
    char k[128];
    snprintf(k, sizeof(k), "kafka.%s", key);
    return config_set(cfg, k, value, "fidelio gen default", err, errlen);
}

int cmd_gen(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"customers", required_argument, NULL, 'n'},
                                             {"events", required_argument, NULL, 'm'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"days", required_argument, NULL, 'd'},
                                             {"referrals", required_argument, NULL, 'r'},
                                             {"skew", required_argument, NULL, 'k'},
                                             {"end", required_argument, NULL, 'E'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"output", required_argument, NULL, 'o'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    gen_opts o = {.customers = 100000, .events = 1000000, .seed = 1, .days = 30, .referrals = 0.1, .skew = 1.0};
    const char *topic = NULL, *output = NULL, *end = NULL;
    int opt, rc = EXIT_USAGE, quiet = 0;
    long long v = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "n:m:s:d:r:t:o:qh", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'n': if (parse_ll(optarg, 1, UINT32_MAX, &o.customers)) bad = "--customers wants 1..4294967295"; break;
        case 'm': if (parse_ll(optarg, 0, UINT32_MAX, &o.events)) bad = "--events wants 0..4294967295"; break;
        case 's':
            if (parse_ll(optarg, 0, INT64_MAX, &v))
                bad = "--seed wants a non-negative integer";
            o.seed = (uint64_t)v;
            break;
        case 'd': if (parse_ll(optarg, 1, 3650, &o.days)) bad = "--days wants 1..3650"; break;
        case 'r': if (parse_double(optarg, 0, 1, &o.referrals)) bad = "--referrals wants a share in 0..1"; break;
        case 'k': if (parse_double(optarg, 0, 4, &o.skew)) bad = "--skew wants 0..4"; break;
        case 'E': end = optarg; break;
        case 't': topic = optarg; break;
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
        if (bad) {
            fprintf(stderr, "fidelio gen: %s, not '%s'\n", bad, optarg);
            goto out_cc;
        }
    }
    if (!topic == !output || optind < argc) {
        fprintf(stderr, "fidelio gen: give exactly one of -t TOPIC and -o FILE (and no other argument)\n");
        goto out_cc;
    }
    int64_t now = (int64_t)time(NULL) * 1000;
    o.end_ms = now - now % TIME_MS_PER_DAY;
    if (end) {
        if (time_parse_iso8601(end, &o.end_ms) != 0) {
            if (parse_ll(end, 0, INT64_MAX, &v) != 0) {
                fprintf(stderr, "fidelio gen: --end wants an ISO-8601 time or epoch ms, not '%s'\n", end);
                goto out_cc;
            }
            o.end_ms = (int64_t)v;
        }
    }
    if (o.end_ms > now) {
        fprintf(stderr, "fidelio gen: --end is in the future; events must lie in the past (they would be refused)\n");
        goto out_cc;
    }
    if (o.end_ms - o.days * TIME_MS_PER_DAY < EVENT_MIN_OCCURRED_AT) {
        fprintf(stderr, "fidelio gen: the events would start before 2000-01-01; lower --days or raise --end\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_USAGE;
    char err[1024];
    if (topic && (default_kafka(&cfg, "linger.ms", "20", err, sizeof(err)) ||
                  default_kafka(&cfg, "batch.num.messages", "10000", err, sizeof(err)))) {
        fprintf(stderr, "fidelio gen: %s\n", err);
        goto out_cfg;
    }
    FILE *out = NULL;
    if (output) {
        out = strcmp(output, "-") ? fopen(output, "w") : stdout;
        if (!out) {
            fprintf(stderr, "fidelio gen: %s: %s\n", output, strerror(errno));
            goto out_cfg;
        }
    }
    rc = EXIT_RUNTIME;
    cli_install_signals();
    gen g;
    if (gen_init(&g, &o, err, sizeof(err)) == 0 &&
        gen_run(&g, &cfg, topic, out, output ? output : "", !quiet, err, sizeof(err)) == 0)
        rc = EXIT_OK;
    gen_free(&g);
    if (out && (out == stdout ? fflush(out) : fclose(out)) != 0 && rc == EXIT_OK) {
        snprintf(err, sizeof(err), "%s: %s", output, strerror(errno));
        rc = EXIT_RUNTIME;
    }
    if (rc != EXIT_OK)
        fprintf(stderr, "fidelio gen: %s\n", err);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
