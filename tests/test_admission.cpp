// admission: sockets waiting for their handshake, sockets per address (IPv6 by prefix), and the
// handshake rate per address.
#include <doctest/doctest.h>

#include "core/admission.hpp"

using mqttws::address_group;
using mqttws::admission;
using mqttws::admission_limits;
using verdict = mqttws::admission::verdict;

TEST_CASE("address_group: IPv4 alone, IPv6 by its prefix, anything else as it is") {
    CHECK(address_group("192.0.2.7", 64) == "192.0.2.7");
    CHECK(address_group("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64) == "2001:db8:1:2::/64");
    CHECK(address_group("2001:db8:1:2::1", 64) == address_group("2001:db8:1:2:ffff::9", 64));
    CHECK(address_group("2001:db8:1:2::1", 64) != address_group("2001:db8:1:3::1", 64));
    CHECK(address_group("2001:db8:1:2::1", 48) == "2001:db8:1::/48");
    CHECK(address_group("2001:db8::1", 128) == "2001:db8::1/128");
    CHECK(address_group("::1", 64) == "::/64");
    CHECK(address_group("unknown", 64) == "unknown");
    CHECK(address_group("2001:zz::1", 64) == "2001:zz::1");
}

TEST_CASE("admission: sockets waiting for their handshake are limited in all") {
    admission_limits limits;
    limits.max_pending = 2;
    admission a(limits);
    CHECK(a.accept("a") == verdict::admit);
    CHECK(a.accept("b") == verdict::admit);
    CHECK(a.accept("c") == verdict::too_many_pending);
    a.opened();  // one became a WebSocket: no longer waiting
    CHECK(a.accept("c") == verdict::admit);
    a.release("c", /*pending=*/true);
    CHECK(a.pending() == 1);
}

TEST_CASE("admission: sockets per address count upgraded and pending ones alike") {
    admission_limits limits;
    limits.max_per_address = 2;
    admission a(limits);
    CHECK(a.accept("10.0.0.1") == verdict::admit);
    a.opened();
    CHECK(a.accept("10.0.0.1") == verdict::admit);
    CHECK(a.accept("10.0.0.1") == verdict::too_many_from_address);
    CHECK(a.accept("10.0.0.2") == verdict::admit);  // another address is not affected
    a.release("10.0.0.1", /*pending=*/false);
    CHECK(a.accept("10.0.0.1") == verdict::admit);
    CHECK(a.sockets_from("10.0.0.1") == 2);
}

TEST_CASE("admission: behind a trusted proxy the client's address counts at the handshake") {
    admission_limits limits;
    limits.max_per_address = 1;
    admission a(limits);
    // The proxy's sockets are not limited per address (empty group) ...
    CHECK(a.accept("") == verdict::admit);
    CHECK(a.accept("") == verdict::admit);
    // ... the clients it names are.
    CHECK(a.handshake("198.51.100.9", true, 0) == verdict::admit);
    CHECK(a.handshake("198.51.100.9", true, 0) == verdict::too_many_from_address);
    CHECK(a.handshake("198.51.100.10", true, 0) == verdict::admit);
    a.release_client("198.51.100.9");
    CHECK(a.handshake("198.51.100.9", true, 0) == verdict::admit);
}

TEST_CASE("admission: handshakes per address are rate limited with a burst") {
    admission_limits limits;
    limits.handshakes_per_second = 2;  // burst: 4
    admission a(limits);
    for (int i = 0; i < 4; ++i)
        CHECK(a.handshake("10.0.0.1", false, 1000) == verdict::admit);
    CHECK(a.handshake("10.0.0.1", false, 1000) == verdict::too_fast);
    CHECK(a.handshake("10.0.0.2", false, 1000) == verdict::admit);
    CHECK(a.handshake("10.0.0.1", false, 1500) == verdict::admit);  // one more after 500 ms
    CHECK(a.handshake("10.0.0.1", false, 1500) == verdict::too_fast);
}

TEST_CASE("admission: idle groups are forgotten") {
    admission_limits limits;
    limits.max_per_address = 5;
    limits.handshakes_per_second = 1;
    admission a(limits);
    CHECK(a.accept("10.0.0.1") == verdict::admit);
    CHECK(a.handshake("10.0.0.1", false, 0) == verdict::admit);
    a.release("10.0.0.1", true);
    a.forget_idle(0);  // its handshake bucket is not full again yet
    CHECK(a.handshake("10.0.0.1", false, 0) == verdict::admit);
    CHECK(a.handshake("10.0.0.1", false, 0) == verdict::too_fast);
    a.forget_idle(60'000);
    CHECK(a.sockets_from("10.0.0.1") == 0);
}
