// auth_limiter: failed authentications per address and per user; a user's lock does not hold
// back the addresses it authenticated from before, and ends by itself.
#include <doctest/doctest.h>

#include <string>

#include "core/auth_limiter.hpp"

using mqttws::auth_limiter;
using mqttws::auth_limits;

TEST_CASE("auth_limiter: an address is held back after its failures, for a bounded time") {
    auth_limiter l(auth_limits{3, 100});
    for (int i = 0; i < 3; ++i) {
        CHECK(l.address_allowed("10.0.0.1", 0));
        l.failed("10.0.0.1", "", 0);
    }
    CHECK_FALSE(l.address_allowed("10.0.0.1", 0));
    CHECK(l.address_allowed("10.0.0.2", 0));
    CHECK(l.address_allowed("10.0.0.1", 20'000));  // 3 per minute: one back after 20 s
}

TEST_CASE("auth_limiter: a user's password is not checked after its failures from anywhere") {
    auth_limiter l(auth_limits{100, 5});
    // An attacker rotating addresses: each address fails once.
    for (int i = 0; i < 5; ++i) {
        const std::string address = "10.0.1." + std::to_string(i);
        CHECK(l.user_allowed("alice", address, 0));
        l.failed(address, "alice", 0);
    }
    CHECK_FALSE(l.user_allowed("alice", "10.0.1.99", 0));
    CHECK(l.user_allowed("bob", "10.0.1.99", 0));  // other users are not affected
    // The lock ends by itself: 5 per minute, one check back after 12 s.
    CHECK_FALSE(l.user_allowed("alice", "10.0.1.99", 11'999));
    CHECK(l.user_allowed("alice", "10.0.1.99", 12'000));
}

TEST_CASE("auth_limiter: addresses the user authenticated from before are not locked out") {
    auth_limiter l(auth_limits{100, 2});
    l.succeeded("alice", "192.0.2.10");
    l.failed("10.0.0.1", "alice", 0);
    l.failed("10.0.0.2", "alice", 0);
    CHECK_FALSE(l.user_allowed("alice", "10.0.0.3", 0));
    CHECK(l.user_allowed("alice", "192.0.2.10", 0));
}

TEST_CASE("auth_limiter: only the last few addresses of a user are remembered") {
    auth_limiter l(auth_limits{100, 1});
    for (int i = 0; i < 5; ++i)
        l.succeeded("alice", "192.0.2." + std::to_string(i));
    l.failed("10.0.0.1", "alice", 0);
    CHECK_FALSE(l.user_allowed("alice", "192.0.2.0", 0));  // the oldest was forgotten
    CHECK(l.user_allowed("alice", "192.0.2.4", 0));
}

TEST_CASE("auth_limiter: idle entries are forgotten") {
    auth_limiter l(auth_limits{2, 2});
    l.failed("10.0.0.1", "alice", 0);
    CHECK(l.tracked() == 2);
    l.forget_idle(10'000);
    CHECK(l.tracked() == 2);  // not full again yet
    l.forget_idle(60'000);
    CHECK(l.tracked() == 0);
}
