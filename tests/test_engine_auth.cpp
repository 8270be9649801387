// Unit tests for authentication in core/engine: auth frames (clientId, deviceId, generated anon-
// ids, a second auth), and the limits on failed attempts per address and per user.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/credentials.hpp"
#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::quoted;

// ================================================================= auth

TEST_CASE("engine auth: clientId is echoed in the auth_response with the msgid") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"alice","msgid":"a1"})");

    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);  // the upstream is up: no status frame
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("status") == "success");
    CHECK(frames[0].str("clientId") == "alice");
    CHECK(frames[0].str("msgid") == "a1");
    CHECK(f.upstream_action_count() == 0);  // a plain client subscribes to nothing
}

TEST_CASE("engine auth: deviceId sets device mode and subscribes to devices/<id>/control") {
    engine_fixture f;
    f.upstream_connected();
    f.clear();
    auto c = f.client(1);
    c.send(R"({"type":"auth","deviceId":"dev1","msgid":7})");

    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("clientId") == "dev1");
    CHECK(frames[0].num("msgid") == 7);

    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "devices/dev1/control");
    CHECK(subs[0].subscription_id != 0);
    CHECK(f.stats().filters == 1);

    // The control subscription was not asked for by a frame: confirming it sends no suback.
    f.upstream_subscribed(subs[0].op, 0);
    CHECK(c.take().empty());

    // Device mode: a message on the control topic arrives as a `control` frame.
    f.upstream_message(broker_msg("devices/dev1/control", R"({"cmd":"reboot"})", 0, false,
                                  {subs[0].subscription_id}));
    const frame_list got = c.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].type() == "control");
}

TEST_CASE("engine auth: the device topic prefix comes from engine_config") {
    engine_config config;
    config.device_topic_prefix = "fleet/things";
    engine_fixture f(config);
    f.upstream_connected();
    f.device(1, "d7");
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "fleet/things/d7/control");
}

TEST_CASE("engine auth: an auth without clientId gets a generated anon- id") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth"})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("clientId") == "anon-000000000001");
}

TEST_CASE("engine auth: a client that skips auth is given a generated anon- id") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"ping","msgid":1})");
    REQUIRE(c.take().size() == 1);  // the pong: the request was served
    CHECK(f.env.random_calls == 1);

    // It is authenticated now, under the generated id.
    c.send(R"({"type":"auth","clientId":"late","msgid":2})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "bad_request");
    CHECK(frames[0].str("message").find("anon-000000000001") != std::string::npos);
}

TEST_CASE("engine auth: a second auth is refused with bad_request and its msgid echoed") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.auth(1, "alice");

    SUBCASE("string msgid") {
        c.send(R"({"type":"auth","clientId":"bob","msgid":"again"})");
        const frame_list frames = c.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "bad_request");
        CHECK(frames[0].str("msgid") == "again");
    }
    SUBCASE("numeric msgid") {
        c.send(R"({"type":"auth","clientId":"alice","msgid":42})");
        const frame_list frames = c.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "bad_request");
        CHECK(frames[0].num("msgid") == 42);
    }
    CHECK(f.closes().empty());
}

TEST_CASE("engine auth: a status down frame follows the auth_response while the upstream is down") {
    engine_fixture f;  // the upstream starts down
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"alice"})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[1].type() == "status");
    CHECK(frames[1].str("upstream") == "down");

    SUBCASE("a device too, and its control subscription waits for the upstream") {
        auto d = f.client(2);
        d.send(R"({"type":"auth","deviceId":"dev1"})");
        const frame_list got = d.take();
        REQUIRE(got.size() == 2);
        CHECK(got[0].type() == "auth_response");
        CHECK(got[1].str("upstream") == "down");
        CHECK(f.subscribes().empty());
        f.upstream_connected();
        REQUIRE(f.subscribes().size() == 1);
        CHECK(f.subscribes()[0].filter == "devices/dev1/control");
    }
}

// ================================================================= failed attempts

namespace {

// A policy with a password file of one user, bob, whose password is "hunter2"
// (mosquitto_passwd output, as in test_credentials.cpp).
std::shared_ptr<mqttws::security_policy> bob_password_policy() {
    auto parsed = mqttws::password_file::parse(
        "bob:$7$101$7TJU3kLTbYLXbNac$7R5b7FXX5ZkMkJs23jVP2mYLleOJGeql73vMC50bM3aJ2OQsUeq5xKnkInp0Rt"
        "JZ/ukuUwdUcXQkDHbhT6ORYQ==\n");
    REQUIRE(std::holds_alternative<mqttws::password_file>(parsed));
    auto policy = std::make_shared<mqttws::security_policy>();
    policy->auth = mqttws::authenticator(
        std::make_shared<const mqttws::password_file>(std::get<mqttws::password_file>(parsed)),
        nullptr, false, false);
    return policy;
}

}  // namespace

TEST_CASE("engine auth: failed attempts are limited per IP address, whatever the port") {
    auto policy = bob_password_policy();
    engine_config config;
    config.auth.failures_per_minute = 2;
    engine_fixture f(config);
    mqttws::action_list ignored;
    f.eng.set_security(policy, ignored);
    f.upstream_connected();

    mqttws::connection_id next = 1;
    // The close code the attempt from `remote` ends with.
    auto attempt = [&](const std::string& remote) {
        f.clear_actions();
        auto c = f.open(next++, remote);
        c.send(R"({"type":"auth","clientId":"bob","password":"wrong"})");
        const auto closes = f.closes();
        REQUIRE(closes.size() == 1);
        return closes[0].code;
    };
    using mqttws::close_code;
    SUBCASE("IPv4: the port does not make a new address") {
        CHECK(attempt("192.0.2.7:1000") == close_code::auth_failed);
        CHECK(attempt("192.0.2.7:1001") == close_code::auth_failed);
        CHECK(attempt("192.0.2.7:1002") == close_code::auth_rate_limited);
        CHECK(attempt("192.0.2.8:1000") == close_code::auth_failed);
    }
    SUBCASE("IPv6 in brackets with a port; one /64 is one address") {
        CHECK(attempt("[2001:db8::7]:1000") == close_code::auth_failed);
        CHECK(attempt("[2001:db8::7]:1001") == close_code::auth_failed);
        CHECK(attempt("[2001:db8::7]:1002") == close_code::auth_rate_limited);
        CHECK(attempt("[2001:db8::8]:1000") == close_code::auth_rate_limited);
        CHECK(attempt("[2001:db8:0:1::7]:1000") == close_code::auth_failed);
    }
    SUBCASE("bare IPv6 from X-Forwarded-For: the last group is not a port") {
        CHECK(attempt("2001:db8::7") == close_code::auth_failed);
        CHECK(attempt("2001:db8:0:1::7") == close_code::auth_failed);
        CHECK(attempt("2001:db8::ffff:1") == close_code::auth_failed);
        CHECK(attempt("2001:db8::7") == close_code::auth_rate_limited);
    }
    SUBCASE("the IPv6 prefix is configurable") {
        // (A fixture of its own: the config is read when the engine is made.)
        engine_config per_address = config;
        per_address.auth.ipv6_prefix = 128;
        engine_fixture g(per_address);
        g.eng.set_security(policy, ignored);
        g.upstream_connected();
        auto attempt_g = [&](mqttws::connection_id id, const std::string& remote) {
            g.clear_actions();
            auto c = g.open(id, remote);
            c.send(R"({"type":"auth","clientId":"bob","password":"wrong"})");
            REQUIRE(g.closes().size() == 1);
            return g.closes()[0].code;
        };
        CHECK(attempt_g(1, "[2001:db8::7]:1") == close_code::auth_failed);
        CHECK(attempt_g(2, "[2001:db8::7]:2") == close_code::auth_failed);
        CHECK(attempt_g(3, "[2001:db8::8]:1") == close_code::auth_failed);
        CHECK(attempt_g(4, "[2001:db8::7]:3") == close_code::auth_rate_limited);
    }
}

TEST_CASE("engine auth: engine shards that share the limits count their failures together") {
    auto policy = bob_password_policy();
    engine_config config;
    config.auth.failures_per_minute = 2;
    const mqttws::bridge_state shared = mqttws::make_bridge_state(config);
    engine_fixture a(config, engine_fixture::without_presence, shared);
    engine_fixture b(config, engine_fixture::without_presence, shared);
    engine_fixture own(config);  // an engine with limits of its own
    for (engine_fixture* f : {&a, &b, &own}) {
        mqttws::action_list ignored;
        f->eng.set_security(policy, ignored);
        f->upstream_connected();
    }
    mqttws::connection_id next = 1;
    auto attempt = [&](engine_fixture& f, const std::string& password) {
        f.clear_actions();
        auto c = f.open(next++, "192.0.2.7:1000");
        c.send(R"({"type":"auth","clientId":"bob","password":")" + password + R"("})");
        const auto closes = f.closes();
        return closes.empty() ? 0 : static_cast<int>(closes[0].code);
    };
    using mqttws::close_code;
    CHECK(attempt(a, "wrong") == static_cast<int>(close_code::auth_failed));
    CHECK(attempt(b, "wrong") == static_cast<int>(close_code::auth_failed));
    // The address used up its two failures, one on each shard: refused on both, even with the
    // right password, and an engine of its own still lets it try.
    CHECK(attempt(a, "hunter2") == static_cast<int>(close_code::auth_rate_limited));
    CHECK(attempt(b, "wrong") == static_cast<int>(close_code::auth_rate_limited));
    CHECK(attempt(own, "wrong") == static_cast<int>(close_code::auth_failed));
}

TEST_CASE("engine auth: failed password checks are limited per user, whatever the address") {
    auto policy = bob_password_policy();
    engine_config config;
    config.auth.failures_per_minute = 100;
    config.auth.failures_per_user_per_minute = 3;
    engine_fixture f(config);
    mqttws::action_list ignored;
    f.eng.set_security(policy, ignored);
    f.upstream_connected();

    mqttws::connection_id next = 1;
    // What the attempt ends with: a close code, or nullopt when it authenticated.
    auto attempt = [&](const std::string& remote, const std::string& password) {
        f.clear_actions();
        auto c = f.open(next++, remote);
        c.send(R"({"type":"auth","clientId":"bob","password":)" + quoted(password) + "}");
        const auto closes = f.closes();
        return closes.empty() ? std::optional<mqttws::close_code>{} : closes[0].code;
    };
    using mqttws::close_code;
    CHECK_FALSE(attempt("192.0.2.1:1", "hunter2"));  // bob's usual address
    // An attacker rotates addresses: three guesses, then bob's password is not checked at all.
    CHECK(attempt("10.0.0.1:1", "guess1") == close_code::auth_failed);
    CHECK(attempt("10.0.0.2:1", "guess2") == close_code::auth_failed);
    CHECK(attempt("10.0.0.3:1", "guess3") == close_code::auth_failed);
    CHECK(attempt("10.0.0.4:1", "hunter2") == close_code::auth_rate_limited);
    const auto audits = f.of_kind<mqttws::audit_record>();
    REQUIRE_FALSE(audits.empty());
    CHECK(audits.back().detail.find("for user 'bob'") != std::string::npos);
    // bob from where he authenticated before is not locked out.
    CHECK_FALSE(attempt("192.0.2.1:2", "hunter2"));
    // The lock ends by itself (3 per minute: one back after 20 s).
    f.advance(20'000);
    CHECK_FALSE(attempt("10.0.0.5:1", "hunter2"));
}

TEST_CASE("engine auth: refresh takes a JWT; a password is never checked through it") {
    engine_fixture f;
    mqttws::action_list ignored;
    f.eng.set_security(bob_password_policy(), ignored);
    f.upstream_connected();
    auto c = f.open(1, "192.0.2.1:1");
    c.send(R"({"type":"auth","clientId":"bob","password":"hunter2"})");
    REQUIRE(f.closes().empty());
    c.take();
    // Not even bob's right password: a refresh is not a second way to log in, nor an unlimited
    // supply of (slow) password checks.
    c.send(R"({"type":"refresh","msgid":"r0","token":"hunter2"})");
    for (int i = 1; i <= 50; ++i)
        c.send(R"({"type":"refresh","msgid":"r)" + std::to_string(i) + R"(","token":"guess"})");
    CHECK(c.of_type("refresh_response").empty());
    const auto errors = c.of_type("error");
    REQUIRE(errors.size() == 51);
    CHECK(errors[0].str("code") == "forbidden");
    CHECK(errors[0].str("message") == "refresh takes a JWT");
    CHECK(f.stats().auth_failures == 0);  // no password was checked
    CHECK(f.closes().empty());
}
