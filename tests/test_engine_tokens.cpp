// Unit tests for tokens while connected (core/engine): a JWT's exp enforced on a live
// connection (token_expiring ahead of it, 4401 at it, the session kept), refresh with a new token
// of the same identity (its ACL claims applied at once), and revocation on reload. Also which
// closes keep a session. Time only moves when a test says so.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "core/engine.hpp"
#include "engine_fixture.hpp"
#include "token_signing.hpp"

using mqttws::close_code;
using mqttws::engine_config;
using mqttws::security_policy;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::hs256_token;
using mqttws::test::quoted;

namespace {

constexpr std::string_view secret = "tokens-test-secret-of-at-least-32-bytes";

// A policy accepting HS256 JWTs signed with `secret`, plus the revocation list `revoked`.
std::shared_ptr<security_policy> jwt_policy(std::string_view revoked = {}) {
    auto verifier = std::make_shared<mqttws::jwt_verifier>();
    REQUIRE_FALSE(verifier->accept_hs256(secret));
    auto policy = std::make_shared<security_policy>();
    policy->auth = mqttws::authenticator(nullptr, verifier, false, false);
    auto list = mqttws::revocation_list::parse(revoked);
    REQUIRE(std::holds_alternative<mqttws::revocation_list>(list));
    policy->revoked = std::get<mqttws::revocation_list>(std::move(list));
    return policy;
}

// A token for `sub` expiring at `exp` (Unix seconds), with extra claims.
std::string jwt(std::string_view sub, std::int64_t exp, std::string_view extra = {}) {
    return hs256_token(secret, R"({"sub":)" + quoted(sub) + ",\"exp\":" + std::to_string(exp) +
                                   std::string(extra) + "}");
}

struct token_fixture : engine_fixture {
    explicit token_fixture(engine_config c = config()) : engine_fixture(c) {
        mqttws::action_list ignored;
        eng.set_security(jwt_policy(), ignored);
        upstream_connected();
    }
    static engine_config config() {
        engine_config c;
        c.auth.token_expiry_warning_ms = 30'000;
        c.flow.idle_timeout_ms = 3'600'000;
        c.flow.ping_interval_ms = 3'600'000;
        return c;
    }
    std::int64_t now_s() const { return env.wall / 1000; }
    // Authenticates connection `id` with a token valid for `seconds`; returns the session token.
    std::string login(mqttws::connection_id id, std::string_view sub, std::int64_t seconds,
                      std::string_view extra = {}) {
        auto c = client(id);
        c.send(R"({"type":"auth","token":)" + quoted(jwt(sub, now_s() + seconds, extra)) + "}");
        const frame_list got = c.take();
        REQUIRE(got.size() >= 1);
        REQUIRE(got[0].type() == "auth_response");
        return got[0].str("session");
    }
};

}  // namespace

TEST_CASE("engine tokens: token_expiring ahead of exp, then 4401 at exp; the session is kept") {
    token_fixture f;
    const std::string session = f.login(1, "dash", 100);
    auto c = f.client(1);
    f.advance(69'000);
    f.tick();
    CHECK(c.of_type("token_expiring").empty());
    f.advance(1'000);  // 30 s before exp
    f.tick();
    const frame_list told = c.of_type("token_expiring");
    REQUIRE(told.size() == 1);
    CHECK(told[0].num("in") == 30'000);
    CHECK(told[0].num("expiresAt") == (f.now_s() + 30) * 1000);
    f.tick();
    CHECK(c.of_type("token_expiring").size() == 1);  // told once

    f.advance(30'000);
    f.tick();
    const auto closes = f.closes();
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].code == close_code::token_expired);
    CHECK(closes[0].reason == "Token expired");
    CHECK(f.stats().token_expiries == 1);

    // The bridge closed it with 4401: the session waits for a resume with a new token.
    mqttws::action_list out;
    f.eng.client_closed(1, 4401, /*by_peer=*/false, out);
    CHECK(f.stats().sessions == 1);
    auto again = f.client(2);
    again.send(R"({"type":"auth","token":)" + quoted(jwt("dash", f.now_s() + 600)) +
               R"(,"session":)" + quoted(session) + "}");
    CHECK(again.of_type("auth_response")[0].json("sessionPresent") == "true");
}

TEST_CASE("engine tokens: a refresh with a new token for the same identity moves exp") {
    token_fixture f;
    f.login(1, "dash", 100);
    auto c = f.client(1);
    c.send(R"({"type":"refresh","msgid":"r1","token":)" + quoted(jwt("dash", f.now_s() + 1000)) +
           "}");
    const frame_list answer = c.take();
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].type() == "refresh_response");
    CHECK(answer[0].str("status") == "success");
    CHECK(answer[0].str("msgid") == "r1");
    CHECK(answer[0].num("expiresAt") == (f.now_s() + 1000) * 1000);
    CHECK(f.stats().token_refreshes == 1);

    f.advance(200'000);  // past the first token's exp
    f.tick();
    CHECK(f.closes().empty());
    CHECK(c.of_type("token_expiring").empty());
}

TEST_CASE("engine tokens: a refresh for another identity, or a bad token, is refused") {
    token_fixture f;
    f.login(1, "dash", 100, R"(,"username":"alice")");
    auto c = f.client(1);
    c.send(R"({"type":"refresh","msgid":1,"token":)" + quoted(jwt("other", f.now_s() + 1000)) +
           "}");
    c.send(R"({"type":"refresh","msgid":2,"token":)" +
           quoted(jwt("dash", f.now_s() + 1000, R"(,"username":"mallory")")) + "}");
    c.send(R"({"type":"refresh","msgid":3,"token":"not.a.token"})");
    const frame_list errors = c.of_type("error");
    REQUIRE(errors.size() == 3);
    for (const auto& e : errors)
        CHECK(e.str("code") == "forbidden");
    // The old token still holds until its own exp.
    f.advance(101'000);
    f.tick();
    REQUIRE(f.closes().size() == 1);
    CHECK(f.closes()[0].code == close_code::token_expired);
}

TEST_CASE("engine tokens: a refreshed token's ACL claims apply at once") {
    token_fixture f;
    f.login(1, "dash", 100, R"(,"acl":{"sub":["a/#","b/#"]})");
    auto c = f.client(1);
    c.send(mqttws::test::subscribe_frame("a/x", 0, "1"));
    c.send(mqttws::test::subscribe_frame("b/x", 0, "2"));
    f.confirm("a/x", 0);
    f.confirm("b/x", 0);
    c.take();
    c.send(R"({"type":"refresh","token":)" +
           quoted(jwt("dash", f.now_s() + 1000, R"(,"acl":{"sub":["a/#"]})")) + "}");
    const frame_list errors = c.of_type("error");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].str("code") == "forbidden");
    CHECK(errors[0].str("topic") == "b/x");
    CHECK(f.unsubscribes().size() == 1);
    CHECK(f.unsubscribes()[0].filter == "b/x");
}

TEST_CASE("engine tokens: a reload that revokes a token closes its client and refuses it") {
    token_fixture f;
    f.login(1, "dash", 1000, R"(,"jti":"t-1")");
    f.login(2, "other", 1000, R"(,"jti":"t-2")");
    const std::string detached_session = f.login(3, "gone", 1000);
    f.client_closed(3, /*clean=*/false);
    f.clear();

    mqttws::action_list out;
    f.eng.set_security(jwt_policy("jti t-1\nclient gone\n"), out);
    int closed = 0;
    for (const auto& a : out) {
        if (const auto* c = std::get_if<mqttws::close_client>(&a)) {
            CHECK(c->who == 1);
            CHECK(c->code == close_code::auth_failed);
            ++closed;
        }
    }
    CHECK(closed == 1);
    CHECK(f.stats().revoked == 2);
    CHECK(f.stats().sessions == 2);  // the detached session of "gone" ended

    // The revoked token is refused from now on; another token of the same client is not.
    f.clear();
    auto c4 = f.client(4);
    c4.send(R"({"type":"auth","token":)" + quoted(jwt("dash", f.now_s() + 100, R"(,"jti":"t-1")")) +
            "}");
    REQUIRE(f.closes().size() == 1);
    CHECK(f.closes()[0].code == close_code::auth_failed);
    f.clear();
    auto c5 = f.client(5);
    c5.send(R"({"type":"auth","token":)" + quoted(jwt("dash", f.now_s() + 100, R"(,"jti":"t-3")")) +
            "}");
    CHECK(f.closes().empty());
}

TEST_CASE("engine sessions: which closes keep the session for a resume") {
    struct expectation {
        std::uint16_t code;
        bool by_peer;
        bool kept;
    };
    for (const expectation e : {expectation{1000, true, false}, expectation{1005, true, false},
                                expectation{1001, true, true}, expectation{1006, true, true},
                                expectation{4001, false, true}, expectation{4008, false, true},
                                expectation{4401, false, true}, expectation{4403, false, false},
                                expectation{1009, false, false}, expectation{1001, false, false}}) {
        CAPTURE(e.code);
        CAPTURE(e.by_peer);
        engine_fixture f;
        f.upstream_connected();
        f.auth(1, "c");
        mqttws::action_list out;
        f.eng.client_closed(1, e.code, e.by_peer, out);
        CHECK(f.stats().sessions == (e.kept ? 1u : 0u));
    }
}

TEST_CASE("engine sessions: a resumed auth_response says the session's last seq") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"r"})");
    const std::string session = c.take()[0].str("session");
    f.subscribed(1, "s/#", 0);
    for (int i = 0; i < 3; ++i)
        f.upstream_message(
            mqttws::test::broker_msg("s/a", "1", 0, false, {f.subscription_id("s/#")}));
    f.client_closed(1, /*clean=*/false);
    auto again = f.client(2);
    again.send(R"({"type":"auth","clientId":"r","session":)" + quoted(session) + "}");
    const auto answer = again.of_type("auth_response");
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].num("lastSeq") == 3);
}

TEST_CASE("engine tokens: a resume takes the new token's expiry and claims") {
    token_fixture f;
    const std::string session = f.login(1, "dash", 100);
    f.client_closed(1, /*clean=*/false);
    auto again = f.client(2);
    again.send(R"({"type":"auth","token":)" + quoted(jwt("dash", f.now_s() + 1000)) +
               R"(,"session":)" + quoted(session) + "}");
    REQUIRE(again.of_type("auth_response")[0].json("sessionPresent") == "true");
    f.advance(200'000);  // past the first token's exp
    f.tick();
    CHECK(f.closes().empty());
    f.advance(800'000);
    f.tick();
    REQUIRE(f.closes().size() == 1);
    CHECK(f.closes()[0].code == close_code::token_expired);
}
