// Unit tests for the device dialect in core/engine: status and event reports published for a
// device, and control frames from its control topic.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;

// ================================================================= device dialect

TEST_CASE("engine device: status is published retained at qos 1 and acked when msgid is given") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();

    d.send(
        R"({ "type" : "status", "deviceId" : "dev1", "data" : { "temp" : 21 }, "msgid" : "m1" })");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "devices/dev1/status");
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[0].retain);
    // The payload is the frame, re-serialised compactly.
    CHECK(pubs[0].payload.find(' ') == std::string::npos);
    const json_frame payload(mqttws::make_frame(pubs[0].payload));
    CHECK(payload.type() == "status");
    CHECK(payload.str("deviceId") == "dev1");
    CHECK(payload.json("data") == R"({"temp":21})");
    CHECK(d.frames().empty());  // acked when the broker confirms

    f.upstream_published(pubs[0].op);
    const frame_list frames = d.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "ack");
    CHECK(frames[0].str("status") == "ok");
    CHECK(frames[0].str("msgid") == "m1");
}

TEST_CASE("engine device: event is published not retained, and without msgid is not acked") {
    engine_config config;
    config.device_topic_prefix = "things";
    engine_fixture f(config);
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();

    d.send(R"({"type":"event","deviceId":"dev1","data":{"door":"open"}})");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "things/dev1/event");
    CHECK(pubs[0].qos == 1);
    CHECK_FALSE(pubs[0].retain);
    const json_frame payload(mqttws::make_frame(pubs[0].payload));
    CHECK(payload.type() == "event");
    CHECK(payload.json("data") == R"({"door":"open"})");

    f.upstream_published(pubs[0].op);
    CHECK(d.frames().empty());
}

TEST_CASE("engine device: reporting as another device is forbidden") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();
    d.send(R"({"type":"status","deviceId":"dev2","data":{},"msgid":5})");
    CHECK(f.publishes().empty());
    const frame_list frames = d.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "forbidden");
    CHECK(frames[0].num("msgid") == 5);
}

TEST_CASE("engine device: a message on the device's control topic is a control frame") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.confirm("devices/dev1/control", 0);
    auto monitor = f.subscribed(2, "devices/+/control");
    const std::uint32_t control = f.subscription_id("devices/dev1/control");
    const std::uint32_t watch = f.subscription_id("devices/+/control");
    f.clear();

    f.upstream_message(
        broker_msg("devices/dev1/control", R"({"cmd":"reboot"})", 0, false, {control, watch}));
    const frame_list fd = d.take();
    REQUIRE(fd.size() == 1);
    CHECK(fd[0].type() == "control");
    CHECK(fd[0].str("topic") == "devices/dev1/control");
    CHECK(fd[0].json("payload") == R"({"cmd":"reboot"})");
    const frame_list fm = monitor.take();
    REQUIRE(fm.size() == 1);
    CHECK(fm[0].type() == "message");
}
