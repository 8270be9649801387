// Unit tests for core/replies: the bridge's answers and notices to a client, each parsed back
// strictly (engine_fixture.hpp's json_frame) and checked field by field.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/error.hpp"
#include "core/replies.hpp"
#include "core/requests.hpp"
#include "engine_fixture.hpp"

using namespace mqttws;
using mqttws::test::json_frame;

namespace {

msg_id id_of(std::string json) {
    return msg_id{std::move(json)};
}

}  // namespace

TEST_CASE("encode_auth_response") {
    auto doc =
        json_frame(encode_auth_response("c1", "sess", true, true, 1700000000123, id_of(R"("a1")")));
    CHECK(doc.str("type") == "auth_response");
    CHECK(doc.str("status") == "success");
    CHECK(doc.str("clientId") == "c1");
    CHECK(doc.str("session") == "sess");
    CHECK(doc.json("resumed") == "true");
    CHECK(doc.json("sessionPresent") == "true");
    CHECK(doc.num("timestamp") == 1700000000123);
    CHECK(doc.str("msgid") == "a1");

    doc = json_frame(encode_auth_response("c1", "sess", false, false, 0, id_of("5")));
    CHECK(doc.json("resumed") == "false");
    CHECK(doc.json("sessionPresent") == "false");
    CHECK(doc.num("msgid") == 5);

    // No session: no session fields; no msgid: none written.
    doc = json_frame(encode_auth_response("c\"1", "", true, true, 1, {}));
    CHECK(doc.str("clientId") == "c\"1");
    CHECK_FALSE(doc.has("session"));
    CHECK_FALSE(doc.has("resumed"));
    CHECK_FALSE(doc.has("sessionPresent"));
    CHECK_FALSE(doc.has("msgid"));
}

TEST_CASE("encode_suback / encode_unsuback") {
    auto doc = json_frame(encode_suback(id_of(R"("s1")"), "sport/+/x", 1));
    CHECK(doc.str("type") == "suback");
    CHECK(doc.str("topic") == "sport/+/x");
    CHECK(doc.num("qos") == 1);
    CHECK(doc.str("msgid") == "s1");
    doc = json_frame(encode_suback({}, "#", 0x80));
    CHECK(doc.num("qos") == 128);
    CHECK_FALSE(doc.has("msgid"));

    doc = json_frame(encode_unsuback(id_of("9"), "a/#"));
    CHECK(doc.str("type") == "unsuback");
    CHECK(doc.str("topic") == "a/#");
    CHECK(doc.num("msgid") == 9);
    CHECK_FALSE(doc.has("qos"));
}

TEST_CASE("encode_ack_ok / encode_ack_error") {
    auto doc = json_frame(encode_ack_ok(id_of(R"("p1")")));
    CHECK(doc.str("type") == "ack");
    CHECK(doc.str("status") == "ok");
    CHECK(doc.str("msgid") == "p1");
    CHECK_FALSE(doc.has("code"));

    doc = json_frame(encode_ack_error(id_of("12"), errc::forbidden, "not \"yours\""));
    CHECK(doc.str("type") == "ack");
    CHECK(doc.str("status") == "error");
    CHECK(doc.str("code") == "forbidden");
    CHECK(doc.str("message") == "not \"yours\"");
    CHECK(doc.num("msgid") == 12);
}

TEST_CASE("encode_error: every code, with and without topic and msgid") {
    for (const errc code : {errc::bad_request, errc::forbidden, errc::unsupported, errc::too_large,
                            errc::not_authenticated, errc::unavailable, errc::rate_limited,
                            errc::timeout, errc::internal}) {
        const auto doc = json_frame(encode_error(code, "m", {}));
        CHECK(doc.str("type") == "error");
        CHECK(doc.str("code") == std::string(wire_name(code)));
        CHECK(doc.str("message") == "m");
        CHECK_FALSE(doc.has("msgid"));
        CHECK_FALSE(doc.has("topic"));
    }
    CHECK(wire_name(errc::too_large) == "too_large");
    CHECK(wire_name(errc::not_authenticated) == "not_authenticated");

    const auto doc = json_frame(encode_error(errc::forbidden, "no", id_of(R"("s2")"), "a/b"));
    CHECK(doc.str("msgid") == "s2");
    CHECK(doc.str("topic") == "a/b");
}

TEST_CASE("encode_pong / encode_upstream_status") {
    auto doc = json_frame(encode_pong(42, id_of(R"("k")")));
    CHECK(doc.str("type") == "pong");
    CHECK(doc.num("timestamp") == 42);
    CHECK(doc.str("msgid") == "k");
    doc = json_frame(encode_pong(-1, {}));
    CHECK(doc.num("timestamp") == -1);
    CHECK_FALSE(doc.has("msgid"));

    doc = json_frame(encode_upstream_status(true, 7));
    CHECK(doc.str("type") == "status");
    CHECK(doc.str("upstream") == "up");
    CHECK(doc.num("timestamp") == 7);
    doc = json_frame(encode_upstream_status(false, INT64_MAX));
    CHECK(doc.str("upstream") == "down");
    CHECK(doc.num("timestamp") == INT64_MAX);
}
