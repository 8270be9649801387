// Unit tests for the broker connection in core/engine: status frames when it is lost and
// regained, re-subscribing every held filter, and subacks pending across a reconnect.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::op_id;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::of_type;
using mqttws::test::strings;
using mqttws::test::subscribe_frame;

// ================================================================= upstream state

TEST_CASE("engine upstream: losing the broker sends status down to every authenticated client") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.device(2, "dev");
    auto silent = f.open(3);  // never sent a frame: not authenticated
    f.clear();

    f.upstream_lost("connection reset");
    for (auto* c : {&a, &b}) {
        const frame_list frames = c->take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "status");
        CHECK(frames[0].str("upstream") == "down");
    }
    CHECK(silent.frames().empty());
    CHECK_FALSE(f.stats().upstream_up);
    CHECK(f.closes().empty());
}

TEST_CASE("engine upstream: reconnecting subscribes every held filter again and sends status up") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x/#", 1);
    f.subscribed(1, "y", 0);
    auto b = f.subscribed(2, "x/#", 1);
    auto c = f.auth(3, "c");
    const std::uint32_t sid_x = f.subscription_id("x/#");
    const std::uint32_t sid_y = f.subscription_id("y");
    f.upstream_lost("gone");
    f.clear();

    f.upstream_connected();
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 2);
    std::vector<std::string> filters;
    for (const auto& s : subs) {
        filters.push_back(s.filter);
        CHECK(s.replay_retained);
        CHECK(s.subscription_id == (s.filter == "x/#" ? sid_x : sid_y));
        CHECK(s.qos == (s.filter == "x/#" ? 1 : 0));
    }
    std::sort(filters.begin(), filters.end());
    CHECK(filters == strings{"x/#", "y"});
    for (auto* cl : {&a, &b, &c}) {
        const frame_list frames = cl->take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "status");
        CHECK(frames[0].str("upstream") == "up");
    }
    CHECK(f.stats().upstream_up);
    CHECK(f.stats().upstream_connects == 2);

    // Confirmations send no new subacks; messages route as before.
    for (const auto& s : subs)
        f.upstream_subscribed(s.op, s.qos);
    CHECK(a.frames().empty());
    f.upstream_message(broker_msg("x/1", "v", 1, false, {sid_x}));
    CHECK(a.take().size() == 1);
    CHECK(b.take().size() == 1);
}

TEST_CASE("engine upstream: a suback pending when the broker went away comes after reconnecting") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(subscribe_frame("w", 1, "\"w\""));
    const op_id lost_op = f.subscribes().at(0).op;
    f.upstream_lost("gone");
    f.upstream_subscribed(lost_op, 1);  // late answer from the old connection: ignored
    CHECK(of_type(a.frames(), "suback").empty());
    f.clear();

    f.upstream_connected();
    REQUIRE(f.subscribes().size() == 1);
    f.upstream_subscribed(f.subscribes()[0].op, 1);
    const frame_list subacks = of_type(a.take(), "suback");
    REQUIRE(subacks.size() == 1);
    CHECK(subacks[0].str("msgid") == "w");
}
