// Unit tests for routing in core/engine: which clients a broker message reaches and with what qos,
// by subscription id (MQTT v5) or by matching (3.1.1), and how its payload is embedded.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::send_frame;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;
using mqttws::test::subscribe_frame;
using mqttws::test::unsubscribe_frame;
using mqttws::test::v3_config;

// ================================================================= routing, MQTT v5

TEST_CASE("engine routing v5: a tagged message reaches exactly the subscribers of that filter") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "a/+");
    auto a2 = f.subscribed(4, "a/+");
    auto b = f.subscribed(2, "a/b");
    auto c = f.subscribed(3, "#");

    f.upstream_message(broker_msg("a/b", "x", 0, false, {f.subscription_id("a/+")}));
    CHECK(a.take().size() == 1);
    CHECK(a2.take().size() == 1);
    CHECK(b.frames().empty());
    CHECK(c.frames().empty());

    f.upstream_message(broker_msg("a/b", "x", 0, false, {f.subscription_id("a/b")}));
    const frame_list got = b.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].type() == "message");
    CHECK(got[0].str("topic") == "a/b");
    CHECK(got[0].str("payload") == "x");
    CHECK(a.frames().empty());
    CHECK(a2.frames().empty());
    CHECK(c.frames().empty());
}

TEST_CASE("engine routing v5: a client holding a/# and a/b receives one frame of two copies") {
    engine_fixture f;
    f.upstream_connected();
    auto both = f.subscribed(1, "a/#");
    f.subscribed(1, "a/b");
    auto only_b = f.subscribed(2, "a/b");
    auto only_all = f.subscribed(3, "a/#");
    const std::uint32_t wide = f.subscription_id("a/#");
    const std::uint32_t narrow = f.subscription_id("a/b");
    REQUIRE(wide != narrow);

    SUBCASE("two copies, one tag each") {
        SUBCASE("wide first") {
            f.upstream_message(broker_msg("a/b", "1", 0, false, {wide}));
            f.upstream_message(broker_msg("a/b", "1", 0, false, {narrow}));
        }
        SUBCASE("narrow first") {
            f.upstream_message(broker_msg("a/b", "1", 0, false, {narrow}));
            f.upstream_message(broker_msg("a/b", "1", 0, false, {wide}));
        }
    }
    SUBCASE("one copy with both tags") {
        f.upstream_message(broker_msg("a/b", "1", 0, false, {wide, narrow}));
    }
    CHECK(both.take().size() == 1);
    CHECK(only_b.take().size() == 1);
    CHECK(only_all.take().size() == 1);
}

TEST_CASE("engine routing v5: adding an overlapping filter loses nothing while it is pending") {
    // The client holds "a/b"; it adds "a/#". Until the broker has handled that SUBSCRIBE it
    // sends only the copy tagged with "a/b"; the client must still receive the message, once.
    engine_fixture f;
    f.upstream_connected();
    std::uint8_t wide_qos = 0;
    SUBCASE("same qos (a/# sorts first)") {
        wide_qos = 0;
    }
    SUBCASE("higher qos") {
        wide_qos = 1;
    }
    auto c = f.subscribed(1, "a/b", 0);
    const std::uint32_t narrow = f.subscription_id("a/b");
    c.send(subscribe_frame("a/#", wide_qos, "\"w\""));
    REQUIRE(f.subscribes().size() == 2);

    f.upstream_message(broker_msg("a/b", "before", 0, false, {narrow}));
    CHECK(c.of_type("message").size() == 1);
    c.take();

    // Once the broker knows both, one of the two copies is delivered.
    f.confirm("a/#", wide_qos);
    c.take();
    const std::uint32_t wide = f.subscription_id("a/#");
    f.upstream_message(broker_msg("a/b", "after", wide_qos, false, {narrow}));
    f.upstream_message(broker_msg("a/b", "after", wide_qos, false, {wide}));
    CHECK(c.of_type("message").size() == 1);
}

TEST_CASE("engine routing v5: the qos delivered is min(message qos, best subscription qos)") {
    engine_fixture f;
    f.upstream_connected();

    SUBCASE("one filter") {
        auto a = f.subscribed(1, "q/#", 1);
        const std::uint32_t sid = f.subscription_id("q/#");
        f.upstream_message(broker_msg("q/1", "x", 2, false, {sid}));
        f.upstream_message(broker_msg("q/1", "x", 0, false, {sid}));
        f.upstream_message(broker_msg("q/1", "x", 1, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 3);
        CHECK(frames[0].num("qos") == 1);
        CHECK(frames[1].num("qos") == 0);
        CHECK(frames[2].num("qos") == 1);
    }
    SUBCASE("the best of two overlapping filters") {
        auto b = f.subscribed(2, "q/#", 0);
        f.subscribed(2, "q/1", 2);
        // The broker sends one copy per subscription, at the qos of that subscription.
        f.upstream_message(broker_msg("q/1", "x", 0, false, {f.subscription_id("q/#")}));
        f.upstream_message(broker_msg("q/1", "x", 2, false, {f.subscription_id("q/1")}));
        const frame_list frames = b.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].num("qos") == 2);
    }
}

TEST_CASE("engine routing v5: a message with an unknown subscription id is dropped") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "#");
    const std::uint32_t sid = f.subscription_id("#");
    f.clear();
    f.upstream_message(broker_msg("any/topic", "x", 1, false, {sid + 1000}));
    CHECK(a.frames().empty());
    CHECK(f.sends().empty());
    CHECK(f.stats().messages_in == 1);
    CHECK(f.stats().deliveries == 0);
}

TEST_CASE("engine routing v5: qos 0 recipients share the very same frame") {
    engine_fixture f;
    f.upstream_connected();
    for (mqttws::connection_id id = 1; id <= 4; ++id)
        f.subscribed(id, "fan/#", 0);
    auto one = f.subscribed(5, "fan/#", 1);
    f.clear();

    f.upstream_message(broker_msg("fan/x", R"({"v":1})", 1, false, {f.subscription_id("fan/#")}));
    const auto sends = f.sends();
    REQUIRE(sends.size() == 5);
    std::vector<const std::string*> qos0;
    const std::string* qos1 = nullptr;
    for (const send_frame& s : sends) {
        if (s.to == one.id()) {
            qos1 = s.frame.get();
        } else {
            qos0.push_back(s.frame.get());
        }
    }
    REQUIRE(qos0.size() == 4);
    for (const auto* p : qos0)
        CHECK(p == qos0[0]);
    CHECK(qos1 != nullptr);
    CHECK(qos1 != qos0[0]);
    CHECK(f.stats().deliveries == 5);
}

TEST_CASE("engine routing v5: qos >= 1 deliveries carry a numeric msgid increasing per session") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "m/#", 2);
    auto b = f.subscribed(2, "m/#", 1);
    const std::uint32_t sid = f.subscription_id("m/#");
    for (int i = 0; i < 3; ++i)
        f.upstream_message(broker_msg("m/" + std::to_string(i), "x", 2, false, {sid}));

    for (auto* c : {&a, &b}) {
        const frame_list frames = c->take();
        REQUIRE(frames.size() == 3);
        std::int64_t previous = 0;
        for (const auto& m : frames) {
            CHECK(m.num("qos") >= 1);
            REQUIRE(m.num("msgid") != json_frame::missing);
            CHECK(m.num("msgid") > previous);
            previous = m.num("msgid");
        }
    }
}

// ================================================================= routing, MQTT 3.1.1

TEST_CASE("engine routing v3: untagged messages are matched with the trie, each client once") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    auto exact = f.subscribed(1, "sensors/k/temp");
    auto plus = f.subscribed(2, "sensors/+/temp");
    auto hash = f.subscribed(3, "sensors/#");
    auto all = f.subscribed(4, "#");
    auto sys = f.subscribed(5, "$SYS/#");
    auto lead_plus = f.subscribed(6, "+/broker/#");
    auto several = f.subscribed(7, "sensors/#");
    f.subscribed(7, "sensors/+/temp");
    f.subscribed(7, "#");

    for (const auto& s : f.subscribes())
        CHECK(s.subscription_id == 0);  // no subscription identifiers with 3.1.1

    f.upstream_message(broker_msg("sensors/k/temp", "21"));
    CHECK(exact.take().size() == 1);
    CHECK(plus.take().size() == 1);
    CHECK(hash.take().size() == 1);
    CHECK(all.take().size() == 1);
    CHECK(several.take().size() == 1);
    CHECK(sys.frames().empty());
    CHECK(lead_plus.frames().empty());

    f.upstream_message(broker_msg("$SYS/broker/load", "3"));
    CHECK(sys.take().size() == 1);
    CHECK(all.frames().empty());        // '#' does not match a '$' topic
    CHECK(lead_plus.frames().empty());  // nor does a leading '+'
    CHECK(several.frames().empty());

    f.upstream_message(broker_msg("x/broker/y", "3"));
    CHECK(lead_plus.take().size() == 1);
    CHECK(all.take().size() == 1);
    CHECK(several.take().size() == 1);
    CHECK(sys.frames().empty());
    CHECK(hash.frames().empty());
}

TEST_CASE("engine routing v3: the delivered qos is min(message qos, best subscription qos)") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    auto a = f.subscribed(1, "q/#", 0);
    f.subscribed(1, "q/+", 1);
    f.upstream_message(broker_msg("q/1", "x", 2));
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].num("qos") == 1);
}

TEST_CASE("engine routing v3: a second client joining a held filter subscribes upstream again") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    f.subscribed(1, "t/#", 1);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("t/#", 1, "\"b1\""));
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "t/#");
    CHECK(subs[0].replay_retained);
    CHECK(b.frames().empty());
    f.upstream_subscribed(subs[0].op, 1);
    const frame_list frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "suback");
    CHECK(frames[0].str("msgid") == "b1");
    CHECK(f.client(1).frames().empty());
}

TEST_CASE("engine routing v3: retained replays go to the clients that caused them, for a while") {
    // Mosquitto answers a SUBSCRIBE with its SUBACK and then replays the retained messages; the
    // engine routes a retained message to the clients whose SUBSCRIBE was answered last.
    engine_config config = v3_config();
    config.subscriptions.retained_grace_ms = 500;
    engine_fixture f(config);
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");

    a.send(subscribe_frame("t/#", 0, "1"));
    f.confirm("t/#", 0);
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    f.advance(499);
    f.tick();
    f.upstream_message(broker_msg("t/2", "r2", 0, true));  // still inside the window
    {
        const frame_list got = of_type(a.take(), "message");
        REQUIRE(got.size() == 2);
        CHECK(got[0].json("retain") == "true");
        CHECK(got[1].str("topic") == "t/2");
    }

    // `b` joins while `a`'s window is still open: another SUBSCRIBE, whose replay goes to `b`
    // only — `a` has these messages already.
    b.send(subscribe_frame("t/#", 0, "2"));
    REQUIRE(f.subscribes().size() == 2);
    f.confirm("t/#", 0);
    CHECK(of_type(b.take(), "suback").size() == 1);
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    CHECK(a.frames().empty());
    {
        const frame_list got = b.take();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("topic") == "t/1");
        CHECK(got[0].json("retain") == "true");
    }

    // Live messages (no retain flag with 3.1.1) go to both all along.
    f.upstream_message(broker_msg("t/3", "live", 0, false));
    CHECK(a.take().size() == 1);
    CHECK(b.take().size() == 1);

    // Past the window, a message with the retain flag reaches nobody.
    SUBCASE("tick") {
        f.advance(501);
        f.tick();
    }
    SUBCASE("no tick") {
        f.advance(501);
    }
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    CHECK(a.frames().empty());
    CHECK(b.frames().empty());
}

TEST_CASE("engine routing v3: a client that leaves a filter is no longer a replay target") {
    engine_config config = v3_config();
    config.subscriptions.retained_grace_ms = 500;
    engine_fixture f(config);
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");
    a.send(subscribe_frame("t/#", 0, "1"));
    f.confirm("t/#", 0);
    b.send(subscribe_frame("t/#", 0, "2"));
    f.confirm("t/#", 0);  // the replay of this SUBACK is for `b` only
    a.take();
    b.take();

    SUBCASE("unsubscribe") {
        b.send(unsubscribe_frame("t/#", "3"));
        b.take();
    }
    SUBCASE("the session ends") {
        b.close();  // 1000: the session ends with the connection
    }
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    CHECK(a.frames().empty());
    CHECK(b.frames().empty());
    // Live messages still reach the remaining subscriber.
    f.upstream_message(broker_msg("t/2", "live", 0, false));
    CHECK(a.take().size() == 1);
}

// ================================================================= payload embedding

TEST_CASE("engine message frames: JSON embedded as a value, text as a string, binary as base64") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "p/#");
    const std::uint32_t sid = f.subscription_id("p/#");

    SUBCASE("JSON object") {
        f.upstream_message(broker_msg("p/j", R"({"temp":21.5,"tags":["a","b"]})", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        const auto& payload = frames[0].at("payload");
        REQUIRE(payload.IsObject());
        REQUIRE(payload.HasMember("temp"));
        CHECK(payload["temp"].GetDouble() == doctest::Approx(21.5));
        REQUIRE(payload["tags"].IsArray());
        CHECK(payload["tags"].Size() == 2);
        CHECK_FALSE(frames[0].has("encoding"));
    }
    SUBCASE("JSON number") {
        f.upstream_message(broker_msg("p/n", "42", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].num("payload") == 42);
    }
    SUBCASE("text") {
        f.upstream_message(broker_msg("p/t", "hello \"world\"", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].str("payload") == "hello \"world\"");
        CHECK_FALSE(frames[0].has("encoding"));
    }
    SUBCASE("binary") {
        f.upstream_message(broker_msg("p/b", std::string("\x00\xff\x10", 3), 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].str("payload") == "AP8Q");
        CHECK(frames[0].str("encoding") == "base64");
    }
}
