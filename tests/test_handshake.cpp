// Unit tests for core/handshake: credentials from the upgrade request, X-Forwarded-For, and
// peer addresses without their port.
#include <doctest/doctest.h>

#include "core/handshake.hpp"

using mqttws::address_without_port;
using mqttws::forwarded_client;
using mqttws::request_credentials;

TEST_CASE("handshake: a Bearer token in the Authorization header, scheme in any case") {
    for (const char* header : {"Bearer abc.def", "bearer abc.def", "BEARER abc.def"}) {
        const auto c = request_credentials(header, "/?token=other");
        CHECK(c.bearer_token == "abc.def");
        CHECK(c.username.empty());
    }
}

TEST_CASE("handshake: Basic user:password, split at the first colon") {
    // base64("bob:s3cr:et")
    const auto c = request_credentials("Basic Ym9iOnMzY3I6ZXQ=", "/");
    CHECK(c.username == "bob");
    CHECK(c.password == "s3cr:et");
    CHECK(c.bearer_token.empty());
    SUBCASE("invalid base64 or no colon: no credentials, not the URL's token") {
        CHECK(request_credentials("Basic !!!", "/?token=t").empty());
        CHECK(request_credentials("Basic Ym9i", "/?token=t").empty());  // "bob"
    }
}

TEST_CASE("handshake: ?token= in the URL, percent-decoded, among other parameters") {
    CHECK(request_credentials("", "/mqtt?token=a%2Eb%2ec").bearer_token == "a.b.c");
    CHECK(request_credentials("", "/?x=1&token=t+1&token=second").bearer_token == "t 1");
    CHECK(request_credentials("", "/?mytoken=t").empty());
    CHECK(request_credentials("", "/?token=%zz%4").bearer_token == "%zz%4");  // kept as sent
    CHECK(request_credentials("", "/").empty());
    CHECK(request_credentials("Bearer", "/?token=t").bearer_token == "t");  // no value: ignored
    CHECK(request_credentials("Digest abc", "/").empty());
}

TEST_CASE("handshake: the client a proxy speaks for is the last X-Forwarded-For address") {
    CHECK(forwarded_client("203.0.113.7") == "203.0.113.7");
    CHECK(forwarded_client("198.51.100.1, 203.0.113.7") == "203.0.113.7");
    CHECK(forwarded_client(" 2001:db8::1 ") == "2001:db8::1");
    CHECK(forwarded_client("").empty());
    CHECK(forwarded_client("1.2.3.4, ").empty());
}

TEST_CASE("handshake: a peer address without its port") {
    CHECK(address_without_port("127.0.0.1:5000") == "127.0.0.1");
    CHECK(address_without_port("[::1]:5000") == "::1");
    CHECK(address_without_port("[2001:db8::1]:443") == "2001:db8::1");
    CHECK(address_without_port("2001:db8::1") == "2001:db8::1");  // X-Forwarded-For: no port
    CHECK(address_without_port("203.0.113.7") == "203.0.113.7");
    CHECK(address_without_port("[::1") == "::1");  // malformed: no crash, best effort
    CHECK(address_without_port("").empty());
}
