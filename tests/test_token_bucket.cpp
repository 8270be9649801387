// token_bucket: the bridge's one rate limiter, on an explicit clock.
#include <doctest/doctest.h>

#include "core/token_bucket.hpp"

using mqttws::token_bucket;

TEST_CASE("token_bucket: starts full, allows a burst, then refills at its rate") {
    token_bucket b(2.0, 3.0, 1000);  // 2 per second, burst 3
    CHECK(b.take(1000));
    CHECK(b.take(1000));
    CHECK(b.take(1000));
    CHECK_FALSE(b.take(1000));
    CHECK_FALSE(b.take(1499));  // 0.998 tokens
    CHECK(b.take(1500));        // one token after 500 ms
    CHECK_FALSE(b.take(1500));
    CHECK(b.full(5000));  // never more than the burst
    CHECK(b.take(5000));
    CHECK(b.take(5000));
    CHECK(b.take(5000));
    CHECK_FALSE(b.take(5000));
}

TEST_CASE("token_bucket: spend() counts an event after the fact, down to zero") {
    token_bucket b(1.0, 2.0, 0);
    b.spend(0);
    b.spend(0);
    b.spend(0);  // no debt below zero
    CHECK_FALSE(b.available(0));
    CHECK(b.available(1000));
    CHECK_FALSE(b.full(1000));
    CHECK(b.full(2000));
}

TEST_CASE("token_bucket: a clock that goes back does not add tokens") {
    token_bucket b(1.0, 1.0, 10'000);
    CHECK(b.take(10'000));
    CHECK_FALSE(b.take(5'000));
    CHECK_FALSE(b.take(10'500));
    CHECK(b.take(11'000));
}
