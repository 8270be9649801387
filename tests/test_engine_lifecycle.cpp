// Unit tests for connections in core/engine: shutdown, a client closing, ping, and malformed
// frames answered with an error while the connection stays open.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::strings;

// ================================================================= lifecycle

TEST_CASE("engine lifecycle: shutdown closes every session with 1001") {
    engine_fixture f;
    f.upstream_connected();
    f.auth(1, "a");
    f.subscribed(2, "x");
    f.open(3);
    f.clear();

    f.shutdown();
    const auto closes = f.closes();
    REQUIRE(closes.size() == 3);
    std::vector<mqttws::connection_id> who;
    for (const auto& c : closes) {
        who.push_back(c.who);
        CHECK(static_cast<int>(c.code) == 1001);
    }
    std::sort(who.begin(), who.end());
    CHECK(who == std::vector<mqttws::connection_id>{1, 2, 3});
}

TEST_CASE("engine lifecycle: client_closed cleans up its session and filters") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x");
    f.subscribed(1, "y/#");
    auto d = f.device(2, "dev");
    CHECK(f.stats().connections == 2);
    CHECK(f.stats().filters == 3);
    f.clear();

    a.close();
    d.close();
    CHECK(f.stats().connections == 0);
    CHECK(f.stats().filters == 0);
    std::vector<std::string> filters;
    for (const auto& u : f.unsubscribes())
        filters.push_back(u.filter);
    std::sort(filters.begin(), filters.end());
    CHECK(filters == strings{"devices/dev/control", "x", "y/#"});

    // Events for a closed session are ignored.
    f.clear();
    f.client_text(1, R"({"type":"ping"})");
    CHECK(f.actions().empty());
}

// ================================================================= other requests

TEST_CASE("engine ping: pong with the msgid") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(R"({"type":"ping","msgid":"p"})");
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "pong");
    CHECK(frames[0].str("msgid") == "p");
    CHECK(frames[0].num("timestamp") == f.env.wall);
}

TEST_CASE("engine decode errors: answered with an error frame, the connection stays open") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();

    struct bad_frame {
        const char* text;
        const char* code;
        const char* msgid_json;  // "<missing>" when the error cannot carry one
    };
    const bad_frame cases[] = {
        {"not json", "bad_request", "<missing>"},
        {"[1,2]", "bad_request", "<missing>"},
        {R"({"msgid":"n"})", "bad_request", "\"n\""},
        {R"({"type":"teleport","msgid":5})", "unsupported", "5"},
        {R"({"type":"subscribe","msgid":"s"})", "bad_request", "\"s\""},
        {R"({"type":"publish","topic":"t","qos":1})", "bad_request", "<missing>"},
        {R"({"type":"subscribe","topic":"t","qos":3,"msgid":6})", "bad_request", "6"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        a.send(c.text);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == c.code);
        CHECK(frames[0].json("msgid") == c.msgid_json);
    }
    CHECK(f.closes().empty());
    CHECK(f.upstream_action_count() == 0);

    a.send(R"({"type":"ping","msgid":1})");
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "pong");
}
