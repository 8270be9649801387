// Unit tests for local fan-out (publish_relay, MQTT 5): the bridge subscribes with No Local and
// delivers what is published through it to its own subscribers itself — QoS 0 at once, QoS 1/2
// once the broker accepted it, never a QoS 1/2 publish the broker refused; with MQTT 3.1.1 the
// broker's copy is the only one.
#include <doctest/doctest.h>

#include <string>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::errc;
using mqttws::publish_upstream;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;
using mqttws::test::v3_config;

TEST_CASE("local fan-out: filters are held with No Local (MQTT 5 only)") {
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "t/#", 1);
    REQUIRE(f.subscribes().size() == 1);
    CHECK(f.subscribes()[0].no_local);

    engine_fixture v3(v3_config());
    v3.upstream_connected();
    v3.subscribed(1, "t/#", 1);
    REQUIRE(v3.subscribes().size() == 1);
    CHECK_FALSE(v3.subscribes()[0].no_local);
}

TEST_CASE("local fan-out: a QoS 0 publish reaches local subscribers at once") {
    engine_fixture f;
    f.upstream_connected();
    auto reader = f.subscribed(1, "t/#", 0);
    auto writer = f.auth(2, "writer");
    writer.send(R"({"type":"publish","topic":"t/1","payload":{"v":1},"qos":0})");
    REQUIRE(f.publishes().size() == 1);  // and to the broker, for everyone else
    const frame_list got = reader.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("type") == "message");
    CHECK(got[0].str("topic") == "t/1");
    CHECK(got[0].json("payload") == R"({"v":1})");
    CHECK(writer.take().empty());          // not subscribed itself
    CHECK(f.stats().messages_local == 1);  // not counted as received from the broker
    CHECK(f.stats().messages_in == 0);
}

TEST_CASE("local fan-out: QoS 1 reaches local subscribers once the broker accepted it") {
    engine_fixture f;
    f.upstream_connected();
    auto reader = f.subscribed(1, "t/#", 1);
    auto writer = f.auth(2, "writer");
    writer.send(
        R"({"type":"publish","topic":"t/2","payload":"x","qos":1,"retain":true,"msgid":"p"})");
    const publish_upstream p = f.publishes().at(0);
    CHECK(reader.take().empty());
    SUBCASE("accepted") {
        f.upstream_published(p.op);
        const frame_list got = reader.take();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("topic") == "t/2");
        CHECK(got[0].num("qos") == 1);
        CHECK(got[0].json("retain") == "true");
        CHECK(of_type(writer.take(), "ack").at(0).str("status") == "ok");
        // And it is the retained message a later subscriber of a held filter gets.
        auto late = f.client(3);
        late.send(R"({"type":"subscribe","topic":"t/#","qos":1})");
        const frame_list retained = of_type(late.take(), "message");
        REQUIRE(retained.size() == 1);
        CHECK(retained[0].str("topic") == "t/2");
    }
    SUBCASE("refused: no local subscriber ever sees it") {
        f.upstream_published(p.op, errc::forbidden, "not authorized");
        CHECK(reader.take().empty());
        CHECK(of_type(writer.take(), "ack").at(0).str("status") == "error");
    }
}

TEST_CASE("local fan-out: not with MQTT 3.1.1 (the broker's copy is the only one)") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    auto reader = f.subscribed(1, "t/#", 0);
    f.confirm("t/#", 0);
    auto writer = f.auth(2, "writer");
    writer.send(R"({"type":"publish","topic":"t/1","payload":"x","qos":0})");
    CHECK(reader.take().empty());
}

TEST_CASE("local fan-out: a command and its answer between two clients of one bridge") {
    engine_fixture f;
    f.upstream_connected();
    auto device = f.client(5);
    device.send(R"({"type":"auth","deviceId":"lamp","commands":true})");
    device.take();
    f.confirm("devices/lamp/control", 1);
    auto dash = f.auth(1, "dash");
    dash.send(R"({"type":"command","id":"c","target":"lamp","name":"on"})");
    f.confirm("mqttws/mqttws-bridge/responses", 1);
    CHECK(of_type(dash.take(), "command_status").at(0).str("state") == "queued");
    // The broker accepts the command: the device here gets it without the broker sending it back.
    const publish_upstream command = f.publishes().back();
    f.upstream_published(command.op);
    const frame_list got = device.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("type") == "command");
    // Its answer, accepted by the broker, reaches the dashboard the same way.
    device.send(R"({"type":"command_result","id":")" + got[0].str("id") +
                R"(","status":"succeeded","result":true})");
    const publish_upstream answer = f.publishes().back();
    CHECK(answer.topic == "mqttws/mqttws-bridge/responses");
    f.upstream_published(answer.op);
    const frame_list told = of_type(dash.take(), "command_status");
    REQUIRE(told.size() == 1);
    CHECK(told[0].str("state") == "succeeded");
    CHECK(told[0].json("result") == "true");
}
