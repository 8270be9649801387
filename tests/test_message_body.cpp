// Unit tests for core/message_body: message frames as recipients get them — the payload embedded
// as JSON, as a string or as base64 — and the per-recipient fields finish() writes.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <cstdint>
#include <limits>
#include <string>

#include "core/message_body.hpp"
#include "engine_fixture.hpp"
#include "test_helpers.hpp"

using namespace mqttws;
using namespace std::string_literals;
using mqttws::test::json_frame;
using mqttws::test::nested_arrays;

TEST_CASE("message_body: a JSON payload is embedded as JSON") {
    const std::string payload = R"({ "temp" : 21.5, "tags" : ["a", "b"] })";
    const message_body body("message", "sensors/t1", payload, false, 1700000000000);
    const std::string out = body.finish({});
    CHECK(out.find(R"("payload":)" + payload) != std::string::npos);  // raw, byte for byte
    const auto doc = json_frame(out);
    CHECK(doc.str("type") == "message");
    CHECK(doc.str("topic") == "sensors/t1");
    const rapidjson::Value& p = doc.at("payload");
    REQUIRE(p.IsObject());
    REQUIRE(p.HasMember("temp"));
    CHECK(p["temp"].GetDouble() == doctest::Approx(21.5));
    REQUIRE(p.HasMember("tags"));
    CHECK(p["tags"].Size() == 2);
    CHECK_FALSE(doc.has("encoding"));
    CHECK(doc.json("retain") == "false");
    CHECK(doc.num("timestamp") == 1700000000000);

    for (const char* json :
         {"42", "-1.5e3", "true", "false", "null", "[1,[2,{}]]", R"("quoted")", " 7 ", "\n{}\n"}) {
        INFO(json);
        const auto d = json_frame(message_body("message", "t", json, false, 0).finish({}));
        rapidjson::Document expected;
        expected.Parse(json);
        REQUIRE(d.has("payload"));
        CHECK(d.at("payload") == expected);
    }
}

TEST_CASE("message_body: other UTF-8 is embedded as a string") {
    for (const std::string& text :
         {"hello world"s, ""s, " "s, "caf\xC3\xA9"s, "123abc"s, "{not json"s, "[1,2"s, "1 2"s,
          "{\"a\":1} trailing"s, "tru"s, "nul"s, "'single'"s, "line\nbreak \"q\" \\"s, "a\0b"s,
          "\xEF\xBF\xBF non-character is still UTF-8"s, "NaN"s, "-"s, "01"s,
          "[\"\\ud800\"]"s /* lone surrogate escape: not JSON */}) {
        INFO("payload: " << text);
        const auto doc = json_frame(message_body("message", "t", text, true, 5).finish({}));
        CHECK(doc.str("payload") == text);
        CHECK_FALSE(doc.has("encoding"));
        CHECK(doc.json("retain") == "true");
    }
}

TEST_CASE("message_body: a JSON text with a raw NUL is not embedded") {
    // A raw NUL can never be part of JSON text, but a parser reading a counted buffer may take
    // it as the end of input: "1\0x" must not be embedded as the number 1 followed by junk.
    for (const std::string& payload : {"1\0x"s, "{}\0"s, "[1]\0]"s, "\"s\"\0\"t\""s, "null\0"s}) {
        INFO("payload size " << payload.size());
        const auto doc = json_frame(message_body("message", "t", payload, false, 0).finish({}));
        CHECK(doc.str("payload") == payload);
    }
}

TEST_CASE("message_body: binary payloads are base64 with an encoding field") {
    const std::string binary = "\x00\xFF\xFE\x80"s;
    const auto doc = json_frame(message_body("message", "bin", binary, false, 0).finish({}));
    CHECK(doc.str("payload") == "AP/+gA==");
    CHECK(doc.str("encoding") == "base64");

    for (const std::string& bytes : {"\xC3"s, "ok\xC0\xAF"s, "\xED\xA0\x80"s, "\xF4\x90\x80\x80"s,
                                     "\"\xFF\""s, "{\"a\":\"\xFF\"}"s}) {
        INFO("bytes " << bytes.size());
        const auto d = json_frame(message_body("message", "t", bytes, false, 0).finish({}));
        CHECK(d.str("encoding") == "base64");
        CHECK(d.str("payload").size() == (bytes.size() + 2) / 3 * 4);
    }
}

TEST_CASE("message_body: deep JSON is embedded only up to max_embed_depth") {
    const std::string deep = nested_arrays(40);
    auto doc = json_frame(message_body("message", "t", deep, false, 0).finish({}));
    CHECK(doc.str("payload") == deep);  // over the default of 32: sent as text
    doc = json_frame(message_body("message", "t", deep, false, 0, 64).finish({}));
    CHECK(doc.at("payload").IsArray());
    doc = json_frame(message_body("message", "t", nested_arrays(32), false, 0).finish({}));
    CHECK(doc.at("payload").IsArray());
    doc = json_frame(message_body("message", "t", nested_arrays(10000), false, 0).finish({}));
    CHECK(doc.at("payload").IsString());
}

TEST_CASE("message_body: type and topic are escaped") {
    const auto doc = json_frame(
        message_body("control", "dev/\"quoted\"/caf\xC3\xA9\\", "x", false, 0).finish({}));
    CHECK(doc.str("type") == "control");
    CHECK(doc.str("topic") == "dev/\"quoted\"/caf\xC3\xA9\\");
}

TEST_CASE("message_body::finish writes only the per-recipient fields asked for") {
    const message_body body("message", "t", R"({"v":1})", false, 9);
    CHECK(body.size() > 0);

    auto doc = json_frame(body.finish({}));
    CHECK(doc.num("qos") == 0);
    CHECK_FALSE(doc.has("msgid"));
    CHECK_FALSE(doc.has("seq"));
    CHECK_FALSE(doc.has("dup"));

    delivery_fields qos0;
    qos0.msgid = 55;  // ignored at qos 0: nothing to acknowledge
    doc = json_frame(body.finish(qos0));
    CHECK_FALSE(doc.has("msgid"));

    delivery_fields qos1;
    qos1.qos = 1;
    qos1.msgid = 7;
    doc = json_frame(body.finish(qos1));
    CHECK(doc.num("qos") == 1);
    CHECK(doc.num("msgid") == 7);
    CHECK_FALSE(doc.has("dup"));

    delivery_fields all;
    all.qos = 2;
    all.msgid = UINT64_MAX;
    all.seq = 123456789012345;
    all.dup = true;
    doc = json_frame(body.finish(all));
    CHECK(doc.num("qos") == 2);
    REQUIRE(doc.at("msgid").IsUint64());
    CHECK(doc.at("msgid").GetUint64() == UINT64_MAX);
    CHECK(doc.num("seq") == 123456789012345);
    CHECK(doc.json("dup") == "true");

    // One body, many recipients: finishing does not change the body.
    const std::string first = body.finish(qos1);
    body.finish(all);
    CHECK(body.finish(qos1) == first);
    // Every rendering starts with the same shared part: the qos 0 frame without its '}'.
    const std::string plain = body.finish({});
    const std::size_t shared = plain.rfind(",\"qos\":");
    REQUIRE(shared != std::string::npos);
    CHECK(first.compare(0, shared, plain, 0, shared) == 0);
}

TEST_CASE("message_body: split frames share everything but the recipient's head") {
    const message_body body("message", "room/1", R"({"t":21})", true, 1700000000000);
    delivery_fields a;
    a.qos = 1;
    a.msgid = 7;
    a.seq = 31;
    delivery_fields b;
    b.seq = 32;
    b.dup = true;
    const split_frame first = body.json(a);
    const split_frame second = body.json(b);
    CHECK(first.shared.get() == second.shared.get());  // rendered once
    CHECK(first.head == R"({"type":"message","qos":1,"msgid":7,"seq":31,)");
    CHECK(second.head == R"({"type":"message","qos":0,"seq":32,"dup":true,)");
    CHECK(first.head.str() + *first.shared == body.finish(a));
    const json_frame whole(second.head.str() + *second.shared);
    CHECK(whole.str("topic") == "room/1");
    CHECK(whole.num("seq") == 32);
    CHECK(whole.json("dup") == "true");
    CHECK(whole.json("retain") == "true");
    CHECK(whole.json("payload") == R"({"t":21})");

    // The whole qos 0 frame without a seq is shared too, and says the same.
    CHECK(json_frame(*body.shared_qos0()).json("payload") == R"({"t":21})");
    CHECK(body.shared_qos0().get() == body.shared_qos0().get());
}

TEST_CASE("message_body: the longest head fits its inline buffer and makes a valid frame") {
    // A command (the longest type name ties with "message"), QoS 2, the largest msgid and seq,
    // dup: 93 bytes, frame_head holds 96.
    const auto body =
        message_body::command("dev/1/cmd", R"("name":"reboot")", 1700000000000, "c-1");
    delivery_fields f;
    f.qos = 2;
    f.msgid = std::numeric_limits<std::uint64_t>::max();
    f.seq = std::numeric_limits<std::uint64_t>::max();
    f.dup = true;
    const split_frame frame = body->json(f);
    CHECK(frame.head.size() == 93);
    CHECK(frame.head.size() <= mqttws::frame_head::capacity);
    const json_frame whole(frame.head.str() + *frame.shared);
    CHECK(whole.str("type") == "command");
    CHECK(whole.json("msgid") == "18446744073709551615");
    CHECK(whole.json("seq") == "18446744073709551615");
    CHECK(whole.json("dup") == "true");
}

TEST_CASE("message_body: binary frames put the recipient's fields in a 14-byte head") {
    const message_body body("control", "d/1/control", std::string("\x00\xff", 2), false, 0x0102);
    delivery_fields f;
    f.qos = 2;
    f.msgid = 0x01020304;
    f.seq = 5;
    const split_frame one = body.binary(f);
    f.seq = 6;
    const split_frame two = body.binary(f);
    CHECK(one.shared.get() == two.shared.get());
    REQUIRE(one.head.size() == 14);
    CHECK(one.head.view()[0] == 0x03);                           // control
    CHECK(one.head.view()[1] == 0x02);                           // qos 2, no retain, no dup
    CHECK(one.head.view().substr(2, 4) == "\x01\x02\x03\x04"s);  // msgid
    CHECK(one.head.view().substr(6, 8) == std::string(7, '\0') + "\x05");  // seq
    CHECK(two.head.view().substr(6, 8) == std::string(7, '\0') + "\x06");
    // Then timestamp (8), topic length (2), topic, payload.
    const std::string& rest = *one.shared;
    CHECK(rest.substr(0, 8) == std::string(6, '\0') + "\x01\x02");
    CHECK(rest.substr(8, 2) == "\x00\x0b"s);
    CHECK(rest.substr(10) == "d/1/control"s + std::string("\x00\xff", 2));
}
