/* Validation: each rule of touchpoint_validate, with its error code and message. */
#include <stdlib.h>

#include "codec.h"
#include "test_common.h"

static touchpoint ev;
static char err[512];
static const event_limits lim = {.max_clock_skew_ms = 86400000};

static void teardown(void) { touchpoint_free(&ev); }

static event_err run(void) { return touchpoint_validate(&ev, &lim, T0, err, sizeof(err)); }

START_TEST(valid_samples_pass)
{
    for (int full = 0; full <= 1; full++) {
        sample_touchpoint(&ev, (event_type)_i, full);
        event_err e = run();
        ck_assert_msg(e == EVENT_OK, "%s: %s", event_err_name(e), err);
    }
}
END_TEST

START_TEST(empty_ids)
{
    sample_touchpoint(&ev, EVENT_SIGNUP, 0);
    ev.event_id[0] = '\0';
    ck_assert_int_eq(run(), EVENT_ERR_EMPTY_EVENT_ID);
    sample_touchpoint(&ev, EVENT_SIGNUP, 0);
    ev.customer_id[0] = '\0';
    ck_assert_int_eq(run(), EVENT_ERR_EMPTY_CUSTOMER_ID);
}
END_TEST

START_TEST(customer_id_chars)
{
    static const char *const bad[] = {"a{b", "a}b", "{x}", "tab\there", "nl\n", "del\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sample_touchpoint(&ev, EVENT_SIGNUP, 0);
        strcpy(ev.customer_id, bad[i]);
        ck_assert_int_eq(run(), EVENT_ERR_CUSTOMER_ID_CHARS);
        ck_assert_ptr_nonnull(strstr(err, "customer_id"));
    }
    sample_touchpoint(&ev, EVENT_SIGNUP, 0);
    strcpy(ev.customer_id, "ünïcode-ok@example.com");
    ck_assert_int_eq(run(), EVENT_OK);
}
END_TEST

START_TEST(customer_id_too_long_via_json)
{
    char line[1024], id[200];
    memset(id, 'k', 129);
    id[129] = '\0';
    snprintf(line, sizeof(line), "{\"event_id\":\"e\",\"customer_id\":\"%s\",\"type\":\"SIGNUP\",\"channel\":\"web\","
             "\"occurred_at\":1767225600000}", id);
    codec_record *rec = calloc(1, sizeof(*rec));
    ck_assert_int_eq(codec_decode_json(SCHEMA_TOUCHPOINT, line, strlen(line), rec, err, sizeof(err)),
                     EVENT_ERR_CUSTOMER_ID_TOO_LONG);
    codec_record_free(rec);
    free(rec);
}
END_TEST

START_TEST(negative_amounts)
{
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    ev.payload.purchase.amount_cents = -1;
    ck_assert_int_eq(run(), EVENT_ERR_NEGATIVE_AMOUNT);
    sample_touchpoint(&ev, EVENT_REFUND, 0);
    ev.payload.refund.amount_cents = -100;
    ck_assert_int_eq(run(), EVENT_ERR_NEGATIVE_AMOUNT);
    sample_touchpoint(&ev, EVENT_REDEMPTION, 0);
    ev.payload.redemption.cost_points = -5;
    ck_assert_int_eq(run(), EVENT_ERR_NEGATIVE_AMOUNT);
    sample_touchpoint(&ev, EVENT_APP_USE, 0);
    ev.payload.app_use.session_seconds = -1;
    ck_assert_int_eq(run(), EVENT_ERR_NEGATIVE_AMOUNT);
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    ev.payload.purchase.amount_cents = 0; /* a free order is not an error */
    ck_assert_int_eq(run(), EVENT_OK);
}
END_TEST

/* issue 7 case 6: amounts and points are bounded (documented limits in event.h) */
START_TEST(amounts_bounded)
{
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    ev.payload.purchase.amount_cents = EVENT_MAX_AMOUNT_CENTS;
    ck_assert_int_eq(run(), EVENT_OK);
    ev.payload.purchase.amount_cents = EVENT_MAX_AMOUNT_CENTS + 1;
    ck_assert_int_eq(run(), EVENT_ERR_AMOUNT_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(err, "amount_cents"));
    ev.payload.purchase.amount_cents = INT64_MAX;
    ck_assert_int_eq(run(), EVENT_ERR_AMOUNT_TOO_LARGE);
    sample_touchpoint(&ev, EVENT_REFUND, 0);
    ev.payload.refund.amount_cents = INT64_MAX;
    ck_assert_int_eq(run(), EVENT_ERR_AMOUNT_TOO_LARGE);
    sample_touchpoint(&ev, EVENT_REDEMPTION, 0);
    ev.payload.redemption.cost_points = EVENT_MAX_POINTS;
    ck_assert_int_eq(run(), EVENT_OK);
    ev.payload.redemption.cost_points = EVENT_MAX_POINTS + 1;
    ck_assert_int_eq(run(), EVENT_ERR_AMOUNT_TOO_LARGE);
    ck_assert_str_eq(event_err_name(EVENT_ERR_AMOUNT_TOO_LARGE), "amount_too_large");
}
END_TEST

START_TEST(completeness_range)
{
    static const double bad[] = {-0.01, 1.0000001, 2.0};
    for (size_t i = 0; i < 3; i++) {
        sample_touchpoint(&ev, EVENT_PROFILE_UPDATE, 0);
        ev.payload.profile_update.completeness = bad[i];
        ck_assert_int_eq(run(), EVENT_ERR_COMPLETENESS_RANGE);
    }
    sample_touchpoint(&ev, EVENT_PROFILE_UPDATE, 0);
    ev.payload.profile_update.completeness = 0.0 / 0.0; /* NaN */
    ck_assert_int_eq(run(), EVENT_ERR_COMPLETENESS_RANGE);
    ev.payload.profile_update.completeness = 1.0;
    ck_assert_int_eq(run(), EVENT_OK);
}
END_TEST

START_TEST(occurred_at_bounds)
{
    sample_touchpoint(&ev, EVENT_SIGNUP, 0);
    ev.occurred_at = EVENT_MIN_OCCURRED_AT - 1;
    ck_assert_int_eq(run(), EVENT_ERR_TOO_EARLY);
    ev.occurred_at = EVENT_MIN_OCCURRED_AT;
    ck_assert_int_eq(run(), EVENT_OK);
    ev.occurred_at = T0 + lim.max_clock_skew_ms; /* exactly at the skew: accepted */
    ck_assert_int_eq(run(), EVENT_OK);
    ev.occurred_at = T0 + lim.max_clock_skew_ms + 1;
    ck_assert_int_eq(run(), EVENT_ERR_IN_FUTURE);
    ck_assert_ptr_nonnull(strstr(err, "allowed skew"));
    /* the reference is the message time, not the wall clock: far past events replay fine */
    ev.occurred_at = T0 - INT64_C(10) * 365 * 86400000;
    ck_assert_int_eq(run(), EVENT_OK);
}
END_TEST

START_TEST(channel_and_payload_fields)
{
    sample_touchpoint(&ev, EVENT_SIGNUP, 0);
    strcpy(ev.channel, "Store");
    ck_assert_int_eq(run(), EVENT_ERR_BAD_CHANNEL);
    ev.channel[0] = '\0';
    ck_assert_int_eq(run(), EVENT_ERR_BAD_CHANNEL);
    sample_touchpoint(&ev, EVENT_SIGNUP, 1);
    strcpy(ev.payload.signup.referred_by, ev.customer_id);
    ck_assert_int_eq(run(), EVENT_ERR_BAD_FIELD);
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    ev.payload.purchase.order_id[0] = '\0';
    ck_assert_int_eq(run(), EVENT_ERR_MISSING_FIELD);
    sample_touchpoint(&ev, EVENT_SOCIAL_SHARE, 0);
    ev.payload.social_share.network[0] = '\0';
    ck_assert_int_eq(run(), EVENT_ERR_MISSING_FIELD);
}
END_TEST

START_TEST(error_names_are_distinct)
{
    for (int a = 0; a < EVENT_ERR_COUNT; a++)
        for (int b = a + 1; b < EVENT_ERR_COUNT; b++)
            ck_assert_str_ne(event_err_name(a), event_err_name(b));
}
END_TEST

Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *tc = tcase_create("validate");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, valid_samples_pass, 0, EVENT_TYPE_COUNT);
    tcase_add_test(tc, empty_ids);
    tcase_add_test(tc, customer_id_chars);
    tcase_add_test(tc, customer_id_too_long_via_json);
    tcase_add_test(tc, negative_amounts);
    tcase_add_test(tc, amounts_bounded);
    tcase_add_test(tc, completeness_range);
    tcase_add_test(tc, occurred_at_bounds);
    tcase_add_test(tc, channel_and_payload_fields);
    tcase_add_test(tc, error_names_are_distinct);
    suite_add_tcase(s, tc);
    return s;
}
