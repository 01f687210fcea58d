/* The grouped hand-out order of a replay window (replay_order.h): each
 * customer's messages together, and the merge's order kept between any two
 * messages that touch a common customer's state (its own events; its
 * invitees' crediting events). No server. */
#include <stdlib.h>
#include <string.h>

#include "replay_order.h"
#include "test_common.h"

/* A window given as a string of customer letters in merge order; an
 * upper-case letter is a message that can credit (a PURCHASE, say). */
typedef struct win {
    size_t n;
    const char *cust[256];
    size_t clen[256];
    unsigned char credits[256];
    char names[256][2];
    size_t out[256];
} win;

static void make(win *w, const char *merge)
{
    memset(w, 0, sizeof(*w));
    for (w->n = 0; merge[w->n]; w->n++) {
        char c = merge[w->n];
        w->names[w->n][0] = (char)(c | 0x20);
        w->cust[w->n] = w->names[w->n];
        w->clen[w->n] = 1;
        w->credits[w->n] = c != (char)(c | 0x20);
    }
}

/* The order as the string of customers handed out, with each message's place in the merge. */
static void order_text(const win *w, char *text)
{
    for (size_t i = 0; i < w->n; i++)
        text[i] = w->names[w->out[i]][0];
    text[w->n] = '\0';
}

static void refer(replay_order *o, const char *invitee, const char *referrer)
{
    ck_assert_int_eq(replay_order_refer(o, invitee, strlen(invitee), referrer, strlen(referrer)), 0);
}

START_TEST(customers_grouped)
{
    replay_order *o = replay_order_new();
    ck_assert_ptr_nonnull(o);
    win w;
    char text[257];
    make(&w, "abcabcabcd");
    ck_assert_int_eq(replay_order_window(o, w.n, w.cust, w.clen, w.credits, w.out), 0);
    order_text(&w, text);
    ck_assert_str_eq(text, "aaabbbcccd"); /* customers in the order of their first message */
    for (size_t i = 1; i < w.n; i++)      /* a customer's own messages keep their order */
        if (text[i] == text[i - 1])
            ck_assert_uint_lt(w.out[i - 1], w.out[i]);
    replay_order_free(o);
}
END_TEST

START_TEST(credits_keep_their_place)
{
    replay_order *o = replay_order_new();
    win w;
    char text[257];
    refer(o, "i", "r");
    /* r's first event, then its invitee i's PURCHASE (a credit to r), then r's
     * second: the credit must fall between them, as in the merge */
    make(&w, "rIr");
    ck_assert_int_eq(replay_order_window(o, w.n, w.cust, w.clen, w.credits, w.out), 0);
    order_text(&w, text);
    ck_assert_str_eq(text, "rir");
    /* an invitee's event that cannot credit does not hold r back */
    make(&w, "rir");
    ck_assert_int_eq(replay_order_window(o, w.n, w.cust, w.clen, w.credits, w.out), 0);
    order_text(&w, text);
    ck_assert_str_eq(text, "rri");
    /* two invitees of r: their credits keep their order between them and r's events */
    refer(o, "j", "r");
    make(&w, "xJrIrjx");
    ck_assert_int_eq(replay_order_window(o, w.n, w.cust, w.clen, w.credits, w.out), 0);
    for (size_t i = 0; i < w.n; i++) /* J (1) before r (2) before I (3) before r (4) */
        for (size_t k = i + 1; k < w.n; k++) {
            size_t a = w.out[i], b = w.out[k];
            bool ra = a >= 1 && a <= 4, rb = b >= 1 && b <= 4;
            if (ra && rb)
                ck_assert_uint_lt(a, b);
        }
    order_text(&w, text);
    ck_assert_str_eq(text, "xxjjrir"); /* j whole (its last event credits no one), then r, i brought forward for r's second */
    replay_order_free(o);
}
END_TEST

/* Whether messages a and b of the window touch a common customer's state. */
static bool conflict(const win *w, size_t a, size_t b, const char refs[26][26])
{
    int ca = w->names[a][0] - 'a', cb = w->names[b][0] - 'a';
    bool touch_a[26] = {0}, touch_b[26] = {0};
    touch_a[ca] = touch_b[cb] = true;
    for (int r = 0; r < 26; r++) {
        if (w->credits[a] && refs[ca][r])
            touch_a[r] = true;
        if (w->credits[b] && refs[cb][r])
            touch_b[r] = true;
    }
    for (int r = 0; r < 26; r++)
        if (touch_a[r] && touch_b[r])
            return true;
    return false;
}

START_TEST(random_windows_keep_every_conflict)
{
    srand(11);
    for (int round = 0; round < 300; round++) {
        replay_order *o = replay_order_new();
        char refs[26][26] = {{0}};
        int ncust = 2 + rand() % 12;
        for (int k = rand() % 8; k > 0; k--) {
            int i = rand() % ncust, r = rand() % ncust;
            char a[2] = {(char)('a' + i), 0}, b[2] = {(char)('a' + r), 0};
            refs[i][r] = 1;
            refer(o, a, b);
        }
        char merge[201];
        int n = 1 + rand() % 200;
        for (int i = 0; i < n; i++) {
            char c = (char)('a' + rand() % ncust);
            merge[i] = rand() % 4 == 0 ? (char)(c & ~0x20) : c;
        }
        merge[n] = '\0';
        win w;
        make(&w, merge);
        ck_assert_int_eq(replay_order_window(o, w.n, w.cust, w.clen, w.credits, w.out), 0);
        size_t place[256];
        bool seen[256] = {0};
        for (size_t i = 0; i < w.n; i++) { /* a permutation */
            ck_assert(!seen[w.out[i]]);
            seen[w.out[i]] = true;
            place[w.out[i]] = i;
        }
        for (size_t a = 0; a < w.n; a++)
            for (size_t b = a + 1; b < w.n; b++)
                if (conflict(&w, a, b, refs))
                    ck_assert_msg(place[a] < place[b], "round %d (%s): messages %zu and %zu swapped", round, merge,
                                  a, b);
        replay_order_free(o);
    }
}
END_TEST

Suite *replay_order_suite(void)
{
    Suite *s = suite_create("replay_order");
    TCase *tc = tcase_create("order");
    tcase_add_test(tc, customers_grouped);
    tcase_add_test(tc, credits_keep_their_place);
    tcase_add_test(tc, random_windows_keep_every_conflict);
    suite_add_tcase(s, tc);
    return s;
}
