// Unit tests for publishing in core/engine: the exact bytes published, acks on the broker's
// confirmation, invalid topics, and publishes while the upstream is down or its queue is full.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::errc;
using mqttws::in_kind;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::of_type;

// ================================================================= publish

TEST_CASE("engine publish: the exact payload bytes are published") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();

    std::string expected;
    SUBCASE("a string, raw") {
        a.send(R"({"type":"publish","topic":"t/1","payload":"he said \"hi\"\n"})");
        expected = "he said \"hi\"\n";
    }
    SUBCASE("an object, as compact JSON") {
        a.send(R"({"type":"publish","topic":"t/1","payload": { "a" : [1, 2], "b" : null } })");
        expected = R"({"a":[1,2],"b":null})";
    }
    SUBCASE("base64, decoded") {
        a.send(R"({"type":"publish","topic":"t/1","payload":"AP8Q","encoding":"base64"})");
        expected = std::string("\x00\xff\x10", 3);
    }
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "t/1");
    CHECK(pubs[0].payload == expected);
    CHECK(pubs[0].qos == 0);
    CHECK_FALSE(pubs[0].retain);
    CHECK(a.frames().empty());  // qos 0: no ack
    CHECK(f.stats().publishes == 1);
}

TEST_CASE("engine publish: qos >= 1 is acked when the broker confirms, or fails with its code") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    a.send(R"({"type":"publish","topic":"t/1","payload":"x","qos":1,"retain":true,"msgid":"p1"})");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[0].retain);
    CHECK(a.frames().empty());

    SUBCASE("confirmed") {
        f.upstream_published(pubs[0].op);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "ack");
        CHECK(frames[0].str("status") == "ok");
        CHECK(frames[0].str("msgid") == "p1");
    }
    SUBCASE("failed") {
        f.upstream_published(pubs[0].op, errc::timeout, "no PUBACK");
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "ack");
        CHECK(frames[0].str("status") == "error");
        CHECK(frames[0].str("code") == "timeout");
        CHECK(frames[0].str("msgid") == "p1");
    }
    // A second confirmation of the same op is ignored.
    f.upstream_published(pubs[0].op);
    CHECK(a.frames().empty());
}

TEST_CASE("engine publish: an invalid topic is refused (ack error for qos >= 1, error for qos 0)") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    for (const std::string topic : {"a/+/b", "a/#", ""}) {
        CAPTURE(topic);
        a.send(R"({"type":"publish","topic":")" + topic + R"(","payload":"x","qos":1,"msgid":3})");
        const frame_list acks = a.take();
        REQUIRE(acks.size() == 1);
        CHECK(acks[0].type() == "ack");
        CHECK(acks[0].str("status") == "error");
        CHECK(acks[0].str("code") == "bad_request");
        CHECK(acks[0].num("msgid") == 3);

        a.send(R"({"type":"publish","topic":")" + topic + R"(","payload":"x","msgid":4})");
        const frame_list errors = a.take();
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].type() == "error");
        CHECK(errors[0].str("code") == "bad_request");
        CHECK(errors[0].num("msgid") == 4);
    }
    CHECK(f.publishes().empty());
    CHECK(f.closes().empty());
}

// A binary publish frame: type 0x01, flags (qos | retain 4 | dup 8), a 4-byte msgid, a 2-byte
// topic length, the topic, the payload (docs/protocol.md, "Binary frames").
std::string binary_publish(std::uint8_t flags, std::uint32_t msgid, std::string_view topic,
                           std::string_view payload) {
    std::string frame{'\x01', static_cast<char>(flags)};
    for (int shift = 24; shift >= 0; shift -= 8)
        frame.push_back(static_cast<char>((msgid >> shift) & 0xFF));
    frame.push_back(static_cast<char>(topic.size() >> 8));
    frame.push_back(static_cast<char>(topic.size() & 0xFF));
    frame.append(topic);
    frame.append(payload);
    return frame;
}

TEST_CASE("engine publish: a binary frame publishes its raw payload; a bad one is refused") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    const std::string payload("\x00\xff raw\x00", 7);
    a.send_binary(binary_publish(1 | 4, 42, "t/bin", payload));
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "t/bin");
    CHECK(pubs[0].payload == payload);
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[0].retain);
    CHECK(a.frames().empty());
    f.upstream_published(pubs[0].op);
    {
        const frame_list acks = a.take();
        REQUIRE(acks.size() == 1);
        CHECK(acks[0].type() == "ack");
        CHECK(acks[0].str("status") == "ok");
        CHECK(acks[0].num("msgid") == 42);  // a binary frame's msgid is a number
    }
    CHECK(f.stats().frames_in[static_cast<std::size_t>(in_kind::binary)] == 1);

    // Refused, each with an error frame, and nothing published:
    a.send_binary(std::string("\x01\x00\x00", 3));      // shorter than the header
    a.send_binary(binary_publish(1, 0, "t/bin", "x"));  // qos 1 without a msgid
    a.send_binary(binary_publish(0, 0, "t/+", "x"));    // not a topic one may publish to
    const frame_list errors = a.take();
    REQUIRE(errors.size() == 3);
    for (const auto& e : errors) {
        CHECK(e.type() == "error");
        CHECK(e.str("code") == "bad_request");
    }
    CHECK(f.publishes().size() == 1);
    CHECK(f.stats().frames_in[static_cast<std::size_t>(in_kind::binary)] == 4);
    CHECK(f.closes().empty());
}

TEST_CASE("engine publish: a binary frame before auth is refused where anonymous is not allowed") {
    engine_fixture f;
    auto no_anonymous = std::make_shared<mqttws::security_policy>();
    no_anonymous->auth = mqttws::authenticator(nullptr, nullptr, /*accept_certificates=*/true,
                                               /*allow_anonymous=*/false);
    mqttws::action_list ignored;
    f.eng.set_security(no_anonymous, ignored);
    f.upstream_connected();
    auto a = f.open(1);
    a.send_binary(binary_publish(0, 0, "t/bin", "x"));
    const frame_list got = a.take();
    REQUIRE_FALSE(got.empty());
    CHECK(got[0].str("code") == "not_authenticated");
    CHECK(f.publishes().empty());
}

// Which connections the actions since the last clear_actions() paused (or resumed).
template <class Action>
std::vector<mqttws::connection_id> whom(const std::vector<Action>& actions) {
    std::vector<mqttws::connection_id> out;
    for (const auto& a : actions)
        out.push_back(a.who);
    return out;
}
using ids = std::vector<mqttws::connection_id>;

TEST_CASE(
    "engine publish: while the upstream is congested, each client that publishes is paused "
    "once, and all are resumed when it clears") {
    engine_config config;
    config.flow.idle_timeout_ms = 10'000;
    engine_fixture f(config);
    f.upstream_connected();
    auto publisher = f.auth(1, "p");
    auto reader = f.auth(2, "r");
    auto device = f.device(3, "d3");
    f.clear_actions();
    publisher.send(R"({"type":"publish","topic":"t/1","payload":1})");
    CHECK(f.pauses().empty());  // not congested

    f.upstream_congestion(true);
    publisher.send(R"({"type":"publish","topic":"t/1","payload":2})");
    publisher.send(R"({"type":"publish","topic":"t/1","payload":3,"qos":1,"msgid":"m3"})");
    reader.send(R"({"type":"ping"})");  // not a publish: it is read on
    device.send(R"({"type":"status","deviceId":"d3","t":1})");
    // Every publish still goes to the broker; pausing is about what comes next.
    CHECK(f.publishes().size() == 4);
    CHECK(whom(f.pauses()) == ids{1, 3});
    CHECK(f.stats().publishers_paused == 2);

    // Paused clients are not read, so their silence is no heartbeat timeout; the reader's is.
    f.advance(10'001);
    f.tick();
    CHECK(whom(f.closes()) == ids{2});

    f.clear_actions();
    f.upstream_congestion(false);
    CHECK(whom(f.resumes()) == ids{1, 3});
    f.tick();  // their heartbeat counts from the resume
    CHECK(f.closes().empty());
    publisher.send(R"({"type":"publish","topic":"t/1","payload":4})");
    CHECK(f.pauses().empty());

    // Paused again by the next congestion; a client that closed meanwhile is not resumed.
    f.upstream_congestion(true);
    publisher.send(R"({"type":"publish","topic":"t/1","payload":5})");
    device.send(R"({"type":"status","deviceId":"d3","t":2})");
    CHECK(whom(f.pauses()) == ids{1, 3});
    device.close();
    f.clear_actions();
    f.upstream_congestion(false);
    CHECK(whom(f.resumes()) == ids{1});
}

TEST_CASE("engine publish: while the upstream is down qos 0 is dropped and qos >= 1 queued") {
    engine_fixture f;
    auto a = f.auth(1, "a");
    f.clear();

    a.send(R"({"type":"publish","topic":"t/0","payload":"zero"})");
    a.send(R"({"type":"publish","topic":"t/1","payload":"one","qos":1,"msgid":"q1"})");
    a.send(R"({"type":"publish","topic":"t/2","payload":"two","qos":2,"msgid":"q2"})");
    CHECK(f.upstream_action_count() == 0);
    CHECK(a.frames().empty());
    CHECK(f.stats().publishes_dropped == 1);
    CHECK(f.stats().offline_queued == 2);

    f.upstream_connected();
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 2);
    CHECK(pubs[0].topic == "t/1");
    CHECK(pubs[0].payload == "one");
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[1].topic == "t/2");
    CHECK(pubs[1].qos == 2);
    CHECK(pubs[0].op != pubs[1].op);
    CHECK(f.stats().offline_queued == 0);
    a.take();  // the status up frame

    f.upstream_published(pubs[1].op);
    f.upstream_published(pubs[0].op);
    const frame_list acks = of_type(a.take(), "ack");
    REQUIRE(acks.size() == 2);
    CHECK(acks[0].str("msgid") == "q2");
    CHECK(acks[1].str("msgid") == "q1");
    CHECK(acks[0].str("status") == "ok");
    CHECK(acks[1].str("status") == "ok");
}

TEST_CASE("engine publish: a full offline queue refuses with an unavailable ack") {
    engine_config config;
    config.publishing.offline_queue_messages = 2;
    engine_fixture f(config);
    auto a = f.auth(1, "a");
    f.clear();
    for (int i = 1; i <= 3; ++i) {
        a.send(R"({"type":"publish","topic":"t","payload":"x","qos":1,"msgid":)" +
               std::to_string(i) + "}");
    }
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "ack");
    CHECK(frames[0].str("status") == "error");
    CHECK(frames[0].str("code") == "unavailable");
    CHECK(frames[0].num("msgid") == 3);
    CHECK(f.stats().publishes_refused == 1);
    CHECK(f.stats().offline_queued == 2);

    f.upstream_connected();
    CHECK(f.publishes().size() == 2);
}
