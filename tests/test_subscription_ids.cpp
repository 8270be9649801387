// subscription_ids: MQTT 5 subscription identifiers handed out in order, and after the last one
// from 1 again, skipping those in use.
#include <doctest/doctest.h>

#include <cstdint>

#include "core/subscription_ids.hpp"

using mqttws::subscription_ids;

TEST_CASE("subscription ids: in order, a released one not handed out again before the others") {
    int a = 0, b = 0, c = 0;
    subscription_ids<int> ids;
    CHECK(ids.add(&a) == 1);
    ids.erase(1);
    CHECK(ids.find(1) == nullptr);
    CHECK(ids.add(&b) == 2);  // not 1: the broker may still tag a late message with it
    CHECK(ids.add(&c) == 3);
    CHECK(ids.find(2) == &b);
    CHECK(ids.find(3) == &c);
    CHECK(ids.size() == 2);
}

TEST_CASE("subscription ids: past the last id the count starts over, skipping those in use") {
    int a = 0, b = 0, c = 0, d = 0, e = 0;
    subscription_ids<int> ids(3);
    CHECK(ids.add(&a) == 1);
    CHECK(ids.add(&b) == 2);
    CHECK(ids.add(&c) == 3);
    CHECK(ids.add(&d) == 0);  // all in use: no id
    ids.erase(2);
    CHECK(ids.add(&d) == 2);  // 1 is in use
    ids.erase(1);
    CHECK(ids.add(&e) == 1);  // 3 is in use; round again
    CHECK(ids.find(1) == &e);
    CHECK(ids.find(2) == &d);
    CHECK(ids.find(3) == &c);
}

TEST_CASE("subscription ids: the MQTT 5 range") {
    CHECK(subscription_ids<int>::mqtt_max == 268435455U);  // the largest Variable Byte Integer
    int a = 0, b = 0;
    subscription_ids<int> ids;
    for (std::uint32_t i = 1; i <= 5; ++i)
        CHECK(ids.add(&a) == i);
    ids.erase(3);
    CHECK(ids.add(&b) == 6);
}
