// Unit tests for retained messages in core/engine (MQTT v5): the stored messages a client joining
// a filter gets, deletion by an empty payload, and what is dropped when filters are released.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::of_type;
using mqttws::test::strings;
using mqttws::test::subscribe_frame;
using mqttws::test::topics_of;
using mqttws::test::unsubscribe_frame;

// ================================================================= retained, MQTT v5

TEST_CASE("engine retained v5: a client joining a confirmed filter gets the stored messages") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#", 1);
    const std::uint32_t sid = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 1, true, {sid}));
    f.upstream_message(broker_msg("r/2", R"({"n":2})", 0, true, {sid}));
    f.upstream_message(broker_msg("r/3", "live", 1, false, {sid}));  // not retained: not stored
    CHECK(a.take().size() == 3);
    CHECK(f.stats().retained_cached == 2);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("r/#", 1, "\"b1\""));
    CHECK(f.subscribes().empty());
    const frame_list frames = b.take();
    CHECK(of_type(frames, "suback").size() == 1);
    const frame_list messages = of_type(frames, "message");
    REQUIRE(messages.size() == 2);
    CHECK(topics_of(messages) == strings{"r/1", "r/2"});
    for (const auto& m : messages) {
        CHECK(m.json("retain") == "true");
        if (m.str("topic") == "r/1") {
            CHECK(m.str("payload") == "one");
            CHECK(m.num("qos") == 1);
        } else {
            CHECK(m.json("payload") == R"({"n":2})");
            CHECK(m.num("qos") == 0);
        }
    }
    CHECK(a.frames().empty());  // the existing subscriber is not sent them again
}

TEST_CASE("engine retained v5: an empty retained payload deletes the stored message") {
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "r/#");
    const std::uint32_t sid = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {sid}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {sid}));
    f.upstream_message(broker_msg("r/1", "", 0, true, {sid}));
    CHECK(f.stats().retained_cached == 1);

    auto b = f.auth(2, "b");
    b.send(subscribe_frame("r/#"));
    const frame_list messages = of_type(b.take(), "message");
    CHECK(topics_of(messages) == strings{"r/2"});
}

TEST_CASE("engine retained v5: topics no held filter covers are dropped with the last subscriber") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#");
    f.subscribed(2, "r/1");
    const std::uint32_t wide = f.subscription_id("r/#");
    const std::uint32_t narrow = f.subscription_id("r/1");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {wide, narrow}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {wide}));
    REQUIRE(f.stats().retained_cached == 2);
    f.clear();

    a.send(unsubscribe_frame("r/#"));
    REQUIRE(f.unsubscribes().size() == 1);
    CHECK(f.stats().retained_cached == 1);  // r/1 is still held through "r/1"

    // A new filter: the joiner gets only what the broker replays, nothing from the store.
    auto d = f.auth(4, "d");
    d.send(subscribe_frame("r/+", 0, "\"d\""));
    REQUIRE(f.subscribes().size() == 1);
    CHECK(f.subscribes()[0].replay_retained);
    f.confirm("r/+", 0);
    {
        const frame_list frames = d.take();
        CHECK(of_type(frames, "suback").size() == 1);
        CHECK(of_type(frames, "message").empty());
    }
    const std::uint32_t plus = f.subscription_id("r/+");
    f.upstream_message(broker_msg("r/2", "two", 0, true, {plus}));
    CHECK(topics_of(of_type(d.take(), "message")) == strings{"r/2"});
    CHECK(f.stats().retained_cached == 2);  // stored again: r/+ holds it now
}

TEST_CASE(
    "engine retained v5: a topic whose only filter was released is not served from the store") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#");
    f.subscribed(2, "r/1");
    const std::uint32_t wide = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {wide}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {wide}));
    a.close();  // releases "r/#": r/2 is no longer kept up to date, r/1 is (through "r/1")
    // A later holder of "r/+" (confirmed, no replay fed in here): a joiner of it gets r/1 from
    // the store, but no stale r/2.
    f.subscribed(3, "r/+");
    auto e = f.auth(5, "e");
    e.send(subscribe_frame("r/+"));
    CHECK(topics_of(of_type(e.take(), "message")) == strings{"r/1"});
}
