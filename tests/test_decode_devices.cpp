// Unit tests for core/decode_devices: an auth frame's `will` and `commands`, and the `command`,
// `command_result` and `command_progress` frames — each field's rules and errors.
#include <doctest/doctest.h>

#include <string>

#include "core/requests.hpp"
#include "test_helpers.hpp"

using namespace mqttws;
using mqttws::test::decode_as;
using mqttws::test::decode_fails;
using mqttws::test::expect_bad_request;

TEST_CASE("decode auth: a last will and the commands flag") {
    const auto r = decode_as<auth_request>(
        R"({"type":"auth","deviceId":"d1","commands":true,"will":{"topic":"alerts/d1",)"
        R"("payload":{"lost":true},"qos":1,"retain":true,"delayMs":2500}})");
    CHECK(r.commands);
    REQUIRE(r.will);
    CHECK(r.will->topic == "alerts/d1");
    CHECK(r.will->payload == R"({"lost":true})");
    CHECK(r.will->qos == 1);
    CHECK(r.will->retain);
    CHECK(r.will->delay_ms == 2500);

    const auto plain = decode_as<auth_request>(R"({"type":"auth","clientId":"c"})");
    CHECK_FALSE(plain.will);
    CHECK_FALSE(plain.commands);

    const auto text = decode_as<auth_request>(
        R"({"type":"auth","clientId":"c","will":{"topic":"t","payload":"bye"}})");
    CHECK(text.will->payload == "bye");
    CHECK(text.will->qos == 0);
    CHECK(text.will->delay_ms == 0);
    const auto bytes = decode_as<auth_request>(
        R"({"type":"auth","clientId":"c","will":{"topic":"t","payload":"AAE=","encoding":"base64"}})");
    CHECK(bytes.will->payload == std::string("\x00\x01", 2));

    expect_bad_request(R"({"type":"auth","will":"alerts/x"})");
    expect_bad_request(R"({"type":"auth","will":{"payload":1}})");
    expect_bad_request(R"({"type":"auth","will":{"topic":""}})");
    expect_bad_request(R"({"type":"auth","will":{"topic":"t","qos":3}})");
    expect_bad_request(R"({"type":"auth","will":{"topic":"t","delayMs":-1}})");
    expect_bad_request(R"({"type":"auth","will":{"topic":"t","delayMs":86400001}})");
    expect_bad_request(R"({"type":"auth","commands":"yes"})", "");
}

TEST_CASE("decode command: every field") {
    const auto r = decode_as<command_request>(
        R"({"type":"command","id":"c-17","target":"sensor-001","name":"switch",)"
        R"("params":{"on":true,"level":3},"timeoutMs":5000,"idempotencyKey":"k1","queue":true,)"
        R"("ttlMs":120000})");
    CHECK(r.id.json == R"("c-17")");
    CHECK(r.targets == std::vector<std::string>{"sensor-001"});
    CHECK(r.name == "switch");
    CHECK(r.params_json == R"({"on":true,"level":3})");
    CHECK(r.timeout_ms == 5000);
    CHECK(r.idempotency_key == "k1");
    CHECK(r.queue);
    CHECK(r.ttl_ms == 120000);

    const auto defaults =
        decode_as<command_request>(R"({"type":"command","id":7,"targets":["b","a"],"name":"n"})");
    CHECK(defaults.id.json == "7");
    CHECK(defaults.targets == std::vector<std::string>{"b", "a"});  // in the order given
    CHECK(defaults.params_json == "{}");
    CHECK(defaults.timeout_ms == 30000);
    CHECK(defaults.idempotency_key.empty());
    CHECK_FALSE(defaults.queue);
    // The msgid stands in for a missing id.
    const auto by_msgid =
        decode_as<command_request>(R"({"type":"command","msgid":"m1","target":"a","name":"n"})");
    CHECK(by_msgid.id.json == R"("m1")");
}

TEST_CASE("decode command: refusals") {
    expect_bad_request(R"({"type":"command","target":"a","name":"n"})");
    expect_bad_request(R"({"type":"command","id":"","target":"a","name":"n"})");
    expect_bad_request(R"({"type":"command","id":true,"target":"a","name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","targets":["b"],"name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","targets":[],"name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","targets":["a",1],"name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","targets":["a","a"],"name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a/b","name":"n"})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a"})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","name":""})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","name":"n","timeoutMs":99})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","name":"n","ttlMs":"1"})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","name":"n","queue":1})");
    expect_bad_request(R"({"type":"command","id":"x","target":"a","name":"n","idempotencyKey":")" +
                       std::string(257, 'k') + "\"}");
    std::string many = R"({"type":"command","id":"x","name":"n","targets":[)";
    for (int i = 0; i < 1001; ++i)
        many += (i ? ",\"d" : "\"d") + std::to_string(i) + "\"";
    many += "]}";
    CHECK(decode_fails(many).code == errc::too_large);
}

TEST_CASE("decode command_result and command_progress") {
    const auto done = decode_as<command_result_request>(
        R"({"type":"command_result","id":"abc","status":"failed","result":{"e":1},"msgid":"m"})");
    CHECK(done.id == "abc");
    CHECK(done.status == command_result_request::outcome::failed);
    CHECK(done.result_json == R"({"e":1})");
    CHECK(done.msgid.json == R"("m")");
    const auto bare = decode_as<command_result_request>(
        R"({"type":"command_result","id":"abc","status":"rejected"})");
    CHECK(bare.result_json.empty());
    const auto progress = decode_as<command_result_request>(
        R"({"type":"command_progress","id":"abc","progress":50})");
    CHECK(progress.status == command_result_request::outcome::in_progress);
    CHECK(progress.result_json == "50");

    expect_bad_request(R"({"type":"command_result","status":"succeeded"})");
    expect_bad_request(R"({"type":"command_result","id":"a","status":"done"})");
    expect_bad_request(R"({"type":"command_result","id":"a"})");
    expect_bad_request(R"({"type":"command_progress","id":7})");
}
