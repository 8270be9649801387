// Unit tests for core/decode (requests.hpp): client frames → request structs, or a
// decode_failure with the right code, message and msgid; also that encoders echo a decoded msgid.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/replies.hpp"
#include "core/requests.hpp"
#include "core/text.hpp"
#include "engine_fixture.hpp"
#include "test_helpers.hpp"

using namespace mqttws;
using namespace std::string_literals;
using mqttws::test::json_frame;
using mqttws::test::nested_arrays;

using mqttws::test::decode_as;
using mqttws::test::decode_fails;
using mqttws::test::expect_bad_request;

// ============================== publish ==============================

TEST_CASE("decode publish: the common frame") {
    const auto r = decode_as<publish_request>(
        R"({"type":"publish","topic":"t","payload":"hello","qos":1,"msgid":"p1"})");
    CHECK(r.topic == "t");
    CHECK(r.payload == "hello");
    CHECK(r.qos == 1);
    CHECK_FALSE(r.retain);
    CHECK_FALSE(r.dup);
    CHECK(r.id.json == R"("p1")");
}

TEST_CASE("decode publish: defaults, retain, dup, qos 2") {
    auto r = decode_as<publish_request>(R"({"type":"publish","topic":"a/b"})");
    CHECK(r.topic == "a/b");
    CHECK(r.payload.empty());  // no payload: an empty message (deletes a retained one)
    CHECK(r.qos == 0);
    CHECK(r.id.empty());

    r = decode_as<publish_request>(
        R"({"type":"publish","topic":"a","payload":"x","qos":2,"retain":true,"dup":true,"msgid":7})");
    CHECK(r.qos == 2);
    CHECK(r.retain);
    CHECK(r.dup);
    CHECK(r.id.json == "7");

    // Member order does not matter.
    r = decode_as<publish_request>(
        R"({"msgid":"m","qos":1,"payload":"x","topic":"a","type":"publish"})");
    CHECK(r.topic == "a");
    CHECK(r.qos == 1);
    CHECK(r.id.json == R"("m")");
}

TEST_CASE("decode publish: payload kinds") {
    const auto payload_of = [](const std::string& payload_json) {
        return decode_as<publish_request>(R"({"type":"publish","topic":"t","payload":)" +
                                          payload_json + "}")
            .payload;
    };
    // A string is published as its raw UTF-8 bytes, escapes resolved.
    CHECK(payload_of(R"("hello")") == "hello");
    CHECK(payload_of(R"("")") == "");
    CHECK(payload_of(R"("caf\u00e9")") == "caf\xC3\xA9");
    CHECK(payload_of("\"caf\xC3\xA9\"") == "caf\xC3\xA9");
    CHECK(payload_of(R"("\ud83d\ude00")") == "\xF0\x9F\x98\x80");  // surrogate pair escape
    CHECK(payload_of(R"("a\u0000b")") == "a\0b"s);
    CHECK(payload_of(R"("q\"b\\s\/n\n")") == "q\"b\\s/n\n");
    CHECK(payload_of(R"("{\"a\":1}")") == R"({"a":1})");  // a string that holds JSON stays text
    // Anything else is published as compact JSON text.
    CHECK(payload_of(R"({ "a" : 1 , "b" : [ true , null ] })") == R"({"a":1,"b":[true,null]})");
    CHECK(payload_of("[ 1, 2 ,3 ]") == "[1,2,3]");
    CHECK(payload_of("{}") == "{}");
    CHECK(payload_of("42") == "42");
    CHECK(payload_of("-7") == "-7");
    CHECK(payload_of("1.5") == "1.5");
    CHECK(payload_of("true") == "true");
    CHECK(payload_of("false") == "false");
    CHECK(payload_of("null") == "null");
    CHECK(payload_of(R"({"s":"caf\u00e9","q":"\""})") == "{\"s\":\"caf\xC3\xA9\",\"q\":\"\\\"\"}");
}

TEST_CASE("decode publish: encoding") {
    auto r = decode_as<publish_request>(
        R"({"type":"publish","topic":"t","payload":"AP8=","encoding":"base64"})");
    CHECK(r.payload == "\x00\xFF"s);
    r = decode_as<publish_request>(
        R"({"type":"publish","topic":"t","payload":"","encoding":"base64"})");
    CHECK(r.payload.empty());
    r = decode_as<publish_request>(R"({"type":"publish","topic":"t","encoding":"base64"})");
    CHECK(r.payload.empty());
    // "utf8" is the default spelled out: the string is not decoded.
    r = decode_as<publish_request>(
        R"({"type":"publish","topic":"t","payload":"AP8=","encoding":"utf8"})");
    CHECK(r.payload == "AP8=");

    const char* bad_payload =
        R"({"type":"publish","topic":"t","payload":"AP8","encoding":"base64","msgid":"b"})";
    expect_bad_request(bad_payload, R"("b")");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":"A P8=","encoding":"base64"})");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":"AP8-","encoding":"base64"})");
    // base64 needs a string payload.
    expect_bad_request(R"({"type":"publish","topic":"t","payload":42,"encoding":"base64"})");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":{"a":1},"encoding":"base64"})");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":null,"encoding":"base64"})");
    // Unknown encodings and wrong types.
    expect_bad_request(R"({"type":"publish","topic":"t","payload":"00ff","encoding":"hex"})");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":"x","encoding":"BASE64"})");
    expect_bad_request(R"({"type":"publish","topic":"t","payload":"x","encoding":1})");
}

TEST_CASE("decode publish: field errors keep the msgid") {
    expect_bad_request(R"({"type":"publish","payload":"x","msgid":"m1"})", R"("m1")");
    expect_bad_request(R"({"type":"publish","topic":7,"msgid":"m1"})", R"("m1")");
    expect_bad_request(R"({"type":"publish","topic":null,"msgid":2})", "2");
    expect_bad_request(R"({"type":"publish","topic":"t","retain":"true","msgid":"m"})", R"("m")");
    expect_bad_request(R"({"type":"publish","topic":"t","retain":1})");
    expect_bad_request(R"({"type":"publish","topic":"t","dup":"yes"})");
}

TEST_CASE("decode publish: qos must be the integer 0, 1 or 2") {
    for (const char* qos : {R"("1")", "3", "-1", "1.0", "1.5", "true", "null", "[1]", "256"}) {
        INFO("qos " << qos);
        expect_bad_request(
            std::string(R"({"type":"publish","topic":"t","msgid":"m","qos":)") + qos + "}",
            R"("m")");
    }
}

TEST_CASE("decode publish: qos 1 and 2 need a msgid to acknowledge") {
    auto failure = decode_fails(R"({"type":"publish","topic":"t","payload":"x","qos":1})");
    CHECK(failure.code == errc::bad_request);
    CHECK(failure.message.find("msgid") != std::string::npos);
    failure = decode_fails(R"({"type":"publish","topic":"t","qos":2})");
    CHECK(failure.code == errc::bad_request);
    CHECK(decode_as<publish_request>(R"({"type":"publish","topic":"t","qos":0})").qos == 0);
}

TEST_CASE("decode publish: payload size limit") {
    decode_limits limits;
    limits.max_payload_bytes = 10;
    frame_decoder dec(limits);
    CHECK(
        decode_as<publish_request>(dec, R"({"type":"publish","topic":"t","payload":"0123456789"})")
            .payload.size() == 10);
    auto failure = decode_fails(
        dec, R"({"type":"publish","topic":"t","payload":"01234567890","msgid":"big"})");
    CHECK(failure.code == errc::too_large);
    CHECK(failure.id.json == R"("big")");
    // The limit applies to the bytes that would be published: compact JSON ...
    CHECK(
        decode_as<publish_request>(dec, R"({"type":"publish","topic":"t","payload":[1, 2, 3, 4]})")
            .payload == "[1,2,3,4]");
    CHECK(decode_fails(dec, R"({"type":"publish","topic":"t","payload":[1,2,3,4,55]})").code ==
          errc::too_large);
    // ... and decoded base64 (16 characters carry 12 bytes).
    CHECK(decode_fails(
              dec,
              R"({"type":"publish","topic":"t","payload":"AAAAAAAAAAAAAAAA","encoding":"base64"})")
              .code == errc::too_large);
    CHECK(decode_as<publish_request>(
              dec, R"({"type":"publish","topic":"t","payload":"AAAAAAAAAAAA","encoding":"base64"})")
              .payload.size() == 9);
    // The escaped form may be longer than the limit as long as the bytes are not.
    CHECK(decode_as<publish_request>(
              dec, R"({"type":"publish","topic":"t","payload":"\u00e9\u00e9\u00e9\u00e9\u00e9"})")
              .payload.size() == 10);
}

// ============================== subscribe / unsubscribe ==============================

TEST_CASE("decode subscribe: topic or topics, qos") {
    auto r = decode_as<subscribe_request>(R"({"type":"subscribe","topic":"sport/#","msgid":"s1"})");
    CHECK(r.filters == std::vector<std::string>{"sport/#"});
    CHECK(r.qos == 0);
    CHECK(r.id.json == R"("s1")");

    r = decode_as<subscribe_request>(R"({"type":"subscribe","topics":["a/+","b","a/+"],"qos":2})");
    CHECK(r.filters == std::vector<std::string>{"a/+", "b", "a/+"});  // order kept, as sent
    CHECK(r.qos == 2);
    CHECK(r.id.empty());

    expect_bad_request(R"({"type":"subscribe","msgid":"s"})", R"("s")");  // neither
    expect_bad_request(R"({"type":"subscribe","topic":"a","topics":["b"],"msgid":"s"})",
                       R"("s")");  // both
    expect_bad_request(R"({"type":"subscribe","topic":1})");
    expect_bad_request(R"({"type":"subscribe","topic":["a"]})");
    expect_bad_request(R"({"type":"subscribe","topics":[]})");
    expect_bad_request(R"({"type":"subscribe","topics":"a"})");
    expect_bad_request(R"({"type":"subscribe","topics":{"a":1}})");
    expect_bad_request(R"({"type":"subscribe","topics":["a",1]})");
    expect_bad_request(R"({"type":"subscribe","topics":["a",null]})");
    expect_bad_request(R"({"type":"subscribe","topics":[["a"]]})");
    expect_bad_request(R"({"type":"subscribe","topic":"a","qos":"1"})");
    expect_bad_request(R"({"type":"subscribe","topic":"a","qos":3})");
}

TEST_CASE("decode subscribe: too many topics") {
    const auto frame = [](std::size_t n) {
        std::string s = R"({"type":"subscribe","msgid":"many","topics":[)";
        for (std::size_t i = 0; i < n; ++i)
            s += (i ? ",\"t" : "\"t") + std::to_string(i) + "\"";
        return s + "]}";
    };
    CHECK(decode_as<subscribe_request>(frame(64)).filters.size() == 64);
    auto failure = decode_fails(frame(65));
    CHECK(failure.code == errc::too_large);
    CHECK(failure.id.json == R"("many")");

    decode_limits limits;
    limits.max_filters_per_request = 2;
    frame_decoder dec(limits);
    CHECK(decode_as<unsubscribe_request>(dec, R"({"type":"unsubscribe","topics":["a","b"]})")
              .filters.size() == 2);
    CHECK(decode_fails(dec, R"({"type":"unsubscribe","topics":["a","b","c"]})").code ==
          errc::too_large);
}

TEST_CASE("decode unsubscribe") {
    auto r = decode_as<unsubscribe_request>(R"({"type":"unsubscribe","topic":"a/#","msgid":3})");
    CHECK(r.filters == std::vector<std::string>{"a/#"});
    CHECK(r.id.json == "3");
    r = decode_as<unsubscribe_request>(R"({"type":"unsubscribe","topics":["x","y"]})");
    CHECK(r.filters == std::vector<std::string>{"x", "y"});
    expect_bad_request(R"({"type":"unsubscribe"})");
    expect_bad_request(R"({"type":"unsubscribe","topics":[]})");
    expect_bad_request(R"({"type":"unsubscribe","topics":[false]})");
}

// ============================== ack / ping ==============================

TEST_CASE("decode ack: the numeric delivery id") {
    CHECK(decode_as<ack_request>(R"({"type":"ack","msgid":17})").delivery_id == 17);
    CHECK(decode_as<ack_request>(R"({"type":"ack","msgid":0})").delivery_id == 0);
    CHECK(decode_as<ack_request>(R"({"type":"ack","msgid":18446744073709551615})").delivery_id ==
          UINT64_MAX);
    // Some clients stringify ids: a decimal string is accepted too.
    CHECK(decode_as<ack_request>(R"({"type":"ack","msgid":"17"})").delivery_id == 17);
    CHECK(decode_as<ack_request>(R"({"type":"ack","msgid":"18446744073709551615"})").delivery_id ==
          UINT64_MAX);

    for (const char* bad : {R"("")", R"("abc")", R"("17x")", R"("x17")", R"(" 17")", R"("17 ")",
                            R"("-1")", R"("+1")", R"("1.5")", R"("0x10")",
                            R"("18446744073709551616")", "-1", "1.5", "true", "null", "[17]"}) {
        INFO("msgid " << bad);
        const auto failure = decode_fails(std::string(R"({"type":"ack","msgid":)") + bad + "}");
        CHECK(failure.code == errc::bad_request);
    }
    expect_bad_request(R"({"type":"ack"})");
}

TEST_CASE("decode ping") {
    CHECK(decode_as<ping_request>(R"({"type":"ping"})").id.empty());
    CHECK(decode_as<ping_request>(R"({"type":"ping","msgid":"k"})").id.json == R"("k")");
    CHECK(decode_as<ping_request>(R"({"type":"ping","msgid":-3})").id.json == "-3");
    // Unknown extra members are ignored.
    CHECK(decode_as<ping_request>(R"({"type":"ping","extra":{"x":[1]}})").id.empty());
}

// ============================== auth ==============================

TEST_CASE("decode auth: all fields") {
    const auto r = decode_as<auth_request>(
        R"({"type":"auth","clientId":"c-1","token":"tok","username":"u","password":"pw",)"
        R"("session":"s9","lastSeq":41,"msgid":"a1"})");
    CHECK(r.client_id == "c-1");
    CHECK_FALSE(r.is_device);
    CHECK(r.token == "tok");
    CHECK(r.username == "u");
    CHECK(r.password == "pw");
    CHECK(r.session == "s9");
    REQUIRE(r.last_seq.has_value());
    CHECK(*r.last_seq == 41);
    CHECK(r.id.json == R"("a1")");

    const auto bare = decode_as<auth_request>(R"({"type":"auth","token":"t"})");
    CHECK(bare.client_id.empty());
    CHECK_FALSE(bare.is_device);
    CHECK_FALSE(bare.last_seq.has_value());
}

TEST_CASE("decode auth: deviceId is an alias that marks a device") {
    auto r = decode_as<auth_request>(R"({"type":"auth","deviceId":"dev-7","token":"t"})");
    CHECK(r.client_id == "dev-7");
    CHECK(r.is_device);
    r = decode_as<auth_request>(R"({"type":"auth","deviceId":"dev-7","clientId":"dev-7"})");
    CHECK(r.client_id == "dev-7");
    CHECK(r.is_device);

    const auto failure =
        decode_fails(R"({"type":"auth","deviceId":"dev-7","clientId":"other","msgid":"a"})");
    CHECK(failure.code == errc::bad_request);
    CHECK(failure.id.json == R"("a")");
    expect_bad_request(R"({"type":"auth","deviceId":7})");
    expect_bad_request(R"({"type":"auth","clientId":null})");
}

TEST_CASE("decode auth: client id rules") {
    const std::string id128(128, 'x');
    CHECK(decode_as<auth_request>(R"({"type":"auth","clientId":")" + id128 + "\"}").client_id ==
          id128);
    CHECK(decode_as<auth_request>("{\"type\":\"auth\",\"clientId\":\"caf\xC3\xA9\"}").client_id ==
          "caf\xC3\xA9");
    CHECK(decode_as<auth_request>(R"({"type":"auth","clientId":"a.b-c_d:e@f"})").client_id ==
          "a.b-c_d:e@f");

    const std::string id129(129, 'x');
    for (const std::string& bad :
         {"a/b"s, "+"s, "#"s, "a+"s, "dev#1"s, "/"s, ""s, id129, R"(a\u0001b)"s, R"(\u0000)"s,
          R"(a\nb)"s, R"(a\tb)"s, R"(\u001f)"s, R"(\udc00)"s}) {
        INFO("clientId " << bad);
        expect_bad_request(R"({"type":"auth","clientId":")" + bad + R"(","msgid":1})", "1");
        expect_bad_request(R"({"type":"auth","deviceId":")" + bad + R"(","msgid":1})", "1");
    }
    // 128 characters of multi-byte UTF-8 are more than 128 bytes: the limit is in bytes.
    std::string wide;
    for (int i = 0; i < 65; ++i)
        wide += "\xC3\xA9";
    expect_bad_request(R"({"type":"auth","clientId":")" + wide + "\"}");
}

TEST_CASE("decode auth: field types") {
    expect_bad_request(R"({"type":"auth","token":5})");
    expect_bad_request(R"({"type":"auth","username":true})");
    expect_bad_request(R"({"type":"auth","password":[]})");
    expect_bad_request(R"({"type":"auth","session":{}})");
    expect_bad_request(R"({"type":"auth","lastSeq":-1})");
    expect_bad_request(R"({"type":"auth","lastSeq":"5"})");
    expect_bad_request(R"({"type":"auth","lastSeq":1.5})");
    CHECK(decode_as<auth_request>(R"({"type":"auth","lastSeq":0})").last_seq == 0u);
}

// ============================== device reports ==============================

TEST_CASE("decode status and event (device dialect)") {
    auto r = decode_as<device_report_request>(
        R"({"type":"status", "deviceId":"dev1", "data":{"battery": 97, "ok": true}, "msgid":"d"})");
    CHECK(r.what == device_report_request::kind::status);
    CHECK(r.device_id == "dev1");
    CHECK(r.id.json == R"("d")");
    // The whole frame, compact.
    CHECK(r.frame_json ==
          R"({"type":"status","deviceId":"dev1","data":{"battery":97,"ok":true},"msgid":"d"})");

    r = decode_as<device_report_request>(R"({"type":"event","deviceId":"dev1","data":[1,2]})");
    CHECK(r.what == device_report_request::kind::event);
    const auto doc = json_frame(r.frame_json);
    CHECK(doc.str("type") == "event");
    CHECK(doc.at("data").IsArray());

    expect_bad_request(R"({"type":"status","data":1,"msgid":"x"})", R"("x")");
    expect_bad_request(R"({"type":"event","deviceId":"a/b"})");
    expect_bad_request(R"({"type":"event","deviceId":""})");
    expect_bad_request(R"({"type":"event","deviceId":12})");
}

// ============================== frame-level errors ==============================

TEST_CASE("decode: a frame must be a JSON object with a type") {
    for (const char* frame : {"[]", R"([{"type":"ping"}])", "42", R"("ping")", "null", "true"}) {
        INFO(frame);
        const auto failure = decode_fails(frame);
        CHECK(failure.code == errc::bad_request);
        CHECK(failure.id.empty());
    }
    expect_bad_request(R"({"msgid":"m"})", R"("m")");
    expect_bad_request(R"({"type":1,"msgid":"m"})", R"("m")");
    expect_bad_request(R"({"type":null})");
    expect_bad_request(R"({"type":["publish"]})");
    expect_bad_request("{}");
}

TEST_CASE("decode: an unknown type is unsupported, not malformed") {
    auto failure = decode_fails(R"({"type":"connect","msgid":"u1"})");
    CHECK(failure.code == errc::unsupported);
    CHECK(failure.id.json == R"("u1")");
    CHECK(failure.message.find("connect") != std::string::npos);
    CHECK(decode_fails(R"({"type":"Publish"})").code == errc::unsupported);  // case matters
    CHECK(decode_fails(R"({"type":""})").code == errc::unsupported);
}

TEST_CASE("decode: an unknown type's name is echoed cut to valid UTF-8") {
    // The name is cut to 64 bytes for the message; the cut must not split a character, or the
    // error frame built from the message would not be valid UTF-8 (browsers close on that).
    const std::string type = std::string(63, 'x') + "\xC3\xA9" + std::string(100, 'y');
    const auto failure = decode_fails("{\"type\":\"" + type + "\"}");
    CHECK(failure.code == errc::unsupported);
    CHECK(is_valid_utf8(failure.message));
    CHECK(failure.message.size() < 200);
    const auto doc = json_frame(encode_error(failure.code, failure.message, failure.id));
    CHECK(doc.str("message") == failure.message);

    // RapidJSON turns a lone low-surrogate escape into invalid UTF-8; such a frame is refused
    // as malformed before its type is looked at, and nothing of it is echoed.
    const auto lone = decode_fails(R"({"type":"\udc00x"})");
    CHECK(lone.code == errc::bad_request);
    CHECK(is_valid_utf8(lone.message));
}

TEST_CASE("decode: invalid JSON") {
    for (const std::string& frame :
         {""s, " "s, "{"s, R"({"type":"ping")"s, R"({"type":"ping",})"s, R"({'type':'ping'})"s,
          R"({type:"ping"})"s, R"({"type":"ping"} x)"s, R"({"type":"ping"}{"type":"ping"})"s,
          R"({"type":"ping","msgid":01})"s, R"({"type":"ping","x":NaN})"s,
          R"({"type":"publish","topic":"t","payload":"a
b"})"s,  // raw newline in a string
          "{\"type\":\"ping\",\"x\":\"\t\"}"s, R"({"type":"ping","x":"\x"})"s,
          R"({"type":"ping","x":"\ud800"})"s /* lone surrogate escape */}) {
        INFO("frame: " << frame);
        const auto failure = decode_fails(frame);
        CHECK(failure.code == errc::bad_request);
        CHECK(failure.id.empty());
        CHECK(failure.message.find("invalid JSON") == 0);
    }
}

TEST_CASE("decode: strings must be valid UTF-8") {
    for (const std::string& bad : {"\xC3"s, "\xC0\xAF"s, "\xE0\x80\xAF"s, "\xED\xA0\x80"s,
                                   "\xF4\x90\x80\x80"s, "\xFF"s, "\x80"s, "a\xC3(b"s}) {
        INFO("bytes " << bad.size());
        expect_bad_request(R"({"type":"publish","topic":"t","payload":")" + bad + "\"}");
        expect_bad_request(R"({"type":"publish","topic":")" + bad + "\"}");
        expect_bad_request(R"({"type":"ping","msgid":")" + bad + "\"}");
        expect_bad_request("{\"" + bad + R"(":1,"type":"ping"})");
    }
}

TEST_CASE("a \\u escape of a lone UTF-16 surrogate is refused, with the msgid echoed") {
    frame_decoder decoder;
    for (const char* frame :
         {R"({"type":"subscribe","topic":"a/\udc00","msgid":"s"})",
          R"({"type":"publish","topic":"a","payload":{"k":"\uDFFF"},"msgid":"s"})",
          R"({"type":"publish","topic":"a","payload":{"\udc00":1},"msgid":"s"})"}) {
        CAPTURE(frame);
        auto result = decoder.decode(frame);
        auto* failure = std::get_if<decode_failure>(&result);
        REQUIRE(failure != nullptr);
        CHECK(failure->code == errc::bad_request);
        CHECK(failure->id.json == "\"s\"");
        CHECK(is_valid_utf8(failure->message));
    }
    // A surrogate pair is one character and fine.
    auto ok = decoder.decode(R"({"type":"publish","topic":"a","payload":"\ud83d\ude00"})");
    REQUIRE(std::holds_alternative<client_request>(ok));
    CHECK(std::get<publish_request>(std::get<client_request>(ok)).payload == "\xF0\x9F\x98\x80");
}

TEST_CASE("decode: nesting over max_depth is too_large") {
    const auto with_payload = [](const std::string& payload) {
        return R"({"type":"publish","topic":"t","payload":)" + payload + "}";
    };
    // The frame object is one level: 31 more are fine with the default of 32, 32 are not.
    CHECK(decode_as<publish_request>(with_payload(nested_arrays(31))).payload == nested_arrays(31));
    auto failure = decode_fails(with_payload(nested_arrays(32)));
    CHECK(failure.code == errc::too_large);

    // Hostile depth is refused before parsing, balanced or not.
    CHECK(decode_fails(nested_arrays(10000)).code == errc::too_large);
    CHECK(decode_fails(std::string(10000, '[')).code == errc::too_large);
    std::string objects;
    for (int i = 0; i < 10000; ++i)
        objects += R"({"a":)";
    CHECK(decode_fails(objects).code == errc::too_large);

    // Brackets inside strings are not nesting.
    const std::string brackets(1000, '[');
    CHECK(decode_as<publish_request>(with_payload('"' + brackets + '"')).payload == brackets);

    decode_limits limits;
    limits.max_depth = 2;
    frame_decoder dec(limits);
    CHECK(decode_as<publish_request>(dec, with_payload("[1]")).payload == "[1]");
    CHECK(decode_fails(dec, with_payload("[[1]]")).code == errc::too_large);
}

TEST_CASE("decode: msgid is kept as the JSON text it arrived as") {
    const auto id = [](const std::string& msgid_json) {
        return decode_as<ping_request>(R"({"type":"ping","msgid":)" + msgid_json + "}").id.json;
    };
    CHECK(id(R"("p1")") == R"("p1")");
    CHECK(id("17") == "17");
    CHECK(id("0") == "0");
    CHECK(id("-42") == "-42");
    CHECK(id("18446744073709551615") == "18446744073709551615");
    CHECK(id("-9223372036854775808") == "-9223372036854775808");
    CHECK(id(R"("")") == R"("")");
    // Re-escaped into equivalent JSON: parses back to the same string.
    for (const std::string& text :
         {R"("a\"b\\c")"s, R"("caf\u00e9")"s, R"("tab\there")"s, R"("nul\u0000x")"s, R"("\/")"s}) {
        INFO(text);
        const std::string echoed = id(text);
        rapidjson::Document original, again;
        original.Parse(text.data(), text.size());
        again.Parse<rapidjson::kParseValidateEncodingFlag>(echoed.data(), echoed.size());
        REQUIRE_FALSE(again.HasParseError());
        REQUIRE(again.IsString());
        CHECK(std::string(again.GetString(), again.GetStringLength()) ==
              std::string(original.GetString(), original.GetStringLength()));
    }
}

TEST_CASE("decode: msgid of the wrong type or size") {
    for (const char* bad :
         {"1.5", "1e3", "true", "null", "{}", R"(["m"])", "18446744073709551616"}) {
        INFO("msgid " << bad);
        const auto failure = decode_fails(std::string(R"({"type":"ping","msgid":)") + bad + "}");
        CHECK(failure.code == errc::bad_request);
        CHECK(failure.id.empty());  // an unreadable msgid is not echoed
    }
    const std::string ok(128, 'm');
    CHECK(decode_as<ping_request>(R"({"type":"ping","msgid":")" + ok + "\"}").id.json ==
          '"' + ok + '"');
    // A lone surrogate from an escape is not valid UTF-8: it could not be echoed in a text frame.
    expect_bad_request(R"({"type":"ping","msgid":"\udc00"})");
    const std::string long_id(129, 'm');
    expect_bad_request(R"({"type":"ping","msgid":")" + long_id + "\"}");

    decode_limits limits;
    limits.max_msgid_bytes = 3;
    frame_decoder dec(limits);
    CHECK(decode_as<ping_request>(dec, R"({"type":"ping","msgid":"abc"})").id.json == R"("abc")");
    CHECK(decode_fails(dec, R"({"type":"ping","msgid":"abcd"})").code == errc::bad_request);
}

TEST_CASE("encoders echo a decoded msgid byte for byte") {
    frame_decoder dec;
    for (const char* frame :
         {R"({"type":"ping","msgid":"x\"y\\z"})", R"({"type":"ping","msgid":99})",
          R"({"type":"ping","msgid":"caf\u00e9"})", R"({"type":"ping","msgid":-1})"}) {
        INFO(frame);
        const auto ping = decode_as<ping_request>(dec, frame);
        const json_frame in{std::string(frame)};
        REQUIRE(in.has("msgid"));
        const auto out = json_frame(encode_ack_ok(ping.id));
        CHECK(out.at("msgid") == in.at("msgid"));
        const auto err = json_frame(encode_error(errc::timeout, "t", ping.id));
        CHECK(err.at("msgid") == in.at("msgid"));
    }
}

TEST_CASE("decode: one decoder handles many frames, big and small") {
    frame_decoder dec;
    const std::string big(200 * 1024, 'z');  // beyond the decoder's first pool chunk
    std::string many_members = R"({"type":"publish","topic":"t","payload":{)";
    for (int i = 0; i < 3000; ++i)
        many_members += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
    many_members += "}}";
    for (int round = 0; round < 3; ++round) {
        CHECK(decode_as<publish_request>(
                  dec, R"({"type":"publish","topic":"t","payload":")" + big + "\"}")
                  .payload.size() == big.size());
        CHECK(decode_as<ping_request>(dec, R"({"type":"ping","msgid":1})").id.json == "1");
        CHECK(decode_fails(dec, "{").code == errc::bad_request);
        CHECK(decode_as<publish_request>(dec, many_members).payload.size() > 20000);
        CHECK(decode_as<subscribe_request>(dec, R"({"type":"subscribe","topic":"a"})")
                  .filters.size() == 1);
    }
}

TEST_CASE("decode_for_engine: the decoded request, and the text only of a signed frame") {
    frame_decoder dec;
    // The engine checks a signature against the frame's text; every other frame crosses to the
    // engine's thread without a copy of its text.
    const std::string_view is_signed[] = {
        R"({"type":"publish","topic":"t","payload":1,"ts":1,"nonce":"n0n0n0n0","sig":"AAAA"})",
        R"({"type":"status","deviceId":"d1","t":1,"ts":1,"nonce":"n0n0n0n0","sig":"AAAA"})",
        R"({"type":"event","deviceId":"d1","e":"x","ts":1,"nonce":"n0n0n0n0","sig":"AAAA"})",
        R"({"type":"batch","messages":[{"topic":"t","payload":1}],"ts":1,"nonce":"n0n0n0n0","sig":"AAAA"})"};
    for (const std::string_view frame : is_signed) {
        CAPTURE(frame);
        const decoded_frame got = dec.decode_for_engine(frame);
        const auto* request = std::get_if<client_request>(&got.result);
        REQUIRE(request != nullptr);
        REQUIRE(signature_proof(*request) != nullptr);
        CHECK(signature_proof(*request)->sig == "AAAA");
        CHECK(got.signable_text == frame);
    }
    const std::string_view unsigned_frames[] = {
        R"({"type":"publish","topic":"t","payload":1})",
        R"({"type":"status","deviceId":"d1","t":1})",
        R"({"type":"event","deviceId":"d1","e":"x"})",
        R"({"type":"batch","messages":[{"topic":"t","payload":1}]})",
        R"({"type":"ack","msgid":7})",
        R"({"type":"subscribe","topic":"a/#"})",
        R"({"type":"ping"})"};
    for (const std::string_view frame : unsigned_frames) {
        CAPTURE(frame);
        const decoded_frame got = dec.decode_for_engine(frame);
        REQUIRE(std::holds_alternative<client_request>(got.result));
        CHECK(got.signable_text.empty());
    }
    const decoded_frame ack = dec.decode_for_engine(R"({"type":"ack","msgid":"17"})");
    CHECK(std::get<ack_request>(std::get<client_request>(ack.result)).delivery_id == 17);
    // A refusal crosses as decode() made it, the msgid for the error frame included.
    const decoded_frame bad = dec.decode_for_engine(R"({"type":"nope","msgid":"m"})");
    const auto* failure = std::get_if<decode_failure>(&bad.result);
    REQUIRE(failure != nullptr);
    CHECK(failure->code == errc::unsupported);
    CHECK(failure->id.json == "\"m\"");
    CHECK(bad.signable_text.empty());
}

TEST_CASE("decode_binary_for_engine: a binary publish or its refusal, marked binary, no text") {
    decode_limits limits;
    limits.max_payload_bytes = 4;
    const frame_decoder dec(limits);
    const std::string head("\x01\x01\x00\x00\x00\x07\x00\x01t", 9);
    const decoded_frame ok = dec.decode_binary_for_engine(head + "abcd");
    CHECK(ok.binary);
    CHECK(ok.signable_text.empty());
    const auto& publish = std::get<publish_request>(std::get<client_request>(ok.result));
    CHECK(publish.topic == "t");
    CHECK(publish.payload == "abcd");
    CHECK(publish.qos == 1);
    CHECK(publish.id.json == "7");
    // The decoder's payload limit applies, and the refusal keeps the msgid for its ack.
    const decoded_frame big = dec.decode_binary_for_engine(head + "abcde");
    CHECK(big.binary);
    const auto* failure = std::get_if<decode_failure>(&big.result);
    REQUIRE(failure != nullptr);
    CHECK(failure->code == errc::too_large);
    CHECK(failure->id.json == "7");
}
