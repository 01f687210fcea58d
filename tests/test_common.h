/* test_common.h - helpers shared by the Check suites. */
#ifndef FIDELIO_TEST_COMMON_H
#define FIDELIO_TEST_COMMON_H

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "event.h"

/* 2026-01-01T00:00:00Z */
#define T0 INT64_C(1767225600000)

/* A valid touchpoint of each type, with every optional field set when full. */
static inline void sample_touchpoint(touchpoint *ev, event_type type, int full)
{
    touchpoint_clear(ev);
    snprintf(ev->event_id, sizeof(ev->event_id), "ev-%d-%d", (int)type, full);
    strcpy(ev->customer_id, "cust-0001");
    ev->type = type;
    strcpy(ev->channel, "store");
    ev->occurred_at = T0 + 1234;
    switch (type) {
    case EVENT_SIGNUP:
        ev->payload.signup.has_referred_by = full;
        if (full)
            strcpy(ev->payload.signup.referred_by, "cust-0002");
        break;
    case EVENT_PROFILE_UPDATE: ev->payload.profile_update.completeness = full ? 0.85 : 0.0; break;
    case EVENT_APP_USE:
        ev->payload.app_use.session_seconds = 321;
        ev->payload.app_use.has_feature = full;
        if (full)
            strcpy(ev->payload.app_use.feature, "wallet");
        break;
    case EVENT_SOCIAL_SHARE:
        strcpy(ev->payload.social_share.network, "instagram");
        ev->payload.social_share.has_content_id = full;
        if (full)
            strcpy(ev->payload.social_share.content_id, "post-9");
        break;
    case EVENT_REFERRAL:
        ev->payload.referral.has_invitee_id = full;
        if (full)
            strcpy(ev->payload.referral.invitee_id, "cust-0003");
        break;
    case EVENT_PURCHASE:
        strcpy(ev->payload.purchase.order_id, "ord-1");
        ev->payload.purchase.amount_cents = 12345;
        strcpy(ev->payload.purchase.currency, "EUR");
        ev->payload.purchase.has_store_id = full;
        if (full)
            strcpy(ev->payload.purchase.store_id, "store-7");
        break;
    case EVENT_REFUND:
        strcpy(ev->payload.refund.order_id, "ord-1");
        ev->payload.refund.amount_cents = 500;
        break;
    case EVENT_REDEMPTION:
        strcpy(ev->payload.redemption.redemption_id, "rdm-1");
        strcpy(ev->payload.redemption.reward_code, "VOUCHER-10");
        ev->payload.redemption.cost_points = 1000;
        break;
    default: break;
    }
    if (full) {
        touchpoint_add_attr(ev, "campaign", 8, "autumn", 6);
        touchpoint_add_attr(ev, "ü-key", strlen("ü-key"), "välue \"q\"", strlen("välue \"q\""));
    }
}

/* Field-by-field equality, attributes included (order-insensitive). */
static inline int touchpoint_equal(const touchpoint *a, const touchpoint *b)
{
    if (strcmp(a->event_id, b->event_id) || strcmp(a->customer_id, b->customer_id) || a->type != b->type ||
        strcmp(a->channel, b->channel) || a->occurred_at != b->occurred_at || a->attr_count != b->attr_count)
        return 0;
    if (memcmp(&a->payload, &b->payload, sizeof(a->payload)) != 0)
        return 0;
    for (size_t i = 0; i < a->attr_count; i++) {
        int found = 0;
        for (size_t j = 0; j < b->attr_count; j++)
            if (!strcmp(a->attrs[i].key, b->attrs[j].key) && !strcmp(a->attrs[i].value, b->attrs[j].value))
                found = 1;
        if (!found)
            return 0;
    }
    return 1;
}

#endif
