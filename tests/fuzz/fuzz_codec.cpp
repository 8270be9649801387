// libFuzzer target for core/codec: a client text frame of arbitrary bytes.
//
// 1. frame_decoder::decode never crashes; what it returns keeps its promises (limits, client
//    id rules), and every reply the bridge would build from it (error / ack) is valid JSON. An
//    auth's session token and device id pick a shard that exists (shard_for_auth).
// 2. The same bytes as a broker message payload: message_body renders a frame that is valid
//    UTF-8 JSON, and its payload gives the bytes back (as the same string, as base64, or as
//    JSON text equal in value to the embedded JSON).
// 3. The same bytes as a binary frame: decode_binary_publish never crashes, and a publish it
//    accepts, rendered back by message_body::binary, carries the same topic and payload.
// Any violation aborts, which libFuzzer reports as a crash.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "core/base64.hpp"
#include "core/broker_hub.hpp"
#include "core/message_body.hpp"
#include "core/replies.hpp"
#include "core/requests.hpp"
#include "core/text.hpp"

namespace {

using namespace mqttws;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "fuzz_codec: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

void expect(bool ok, const char* what, std::string_view detail = {}) {
    if (!ok) fail(what, detail);
}

// A frame the bridge sends must be one JSON object in valid UTF-8, with no raw NUL byte.
void parse_frame(const std::string& frame, rapidjson::Document& doc) {
    expect(frame.find('\0') == std::string::npos, "raw NUL in an encoded frame", frame);
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(frame.data(), frame.size());
    expect(!doc.HasParseError(), "encoded frame is not valid JSON", frame);
    expect(doc.IsObject(), "encoded frame is not a JSON object", frame);
}

std::string compact(const rapidjson::Value& v) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
}

void check_frame(const std::string& frame) {
    rapidjson::Document doc;
    parse_frame(frame, doc);
}

void check_msgid(const msg_id& id) {
    if (id.empty()) return;
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(id.json.data(), id.json.size());
    expect(!doc.HasParseError() && (doc.IsString() || doc.IsInt64() || doc.IsUint64()),
           "msgid is not a JSON string or integer", id.json);
    check_frame(encode_ack_ok(id));
}

bool valid_client_id(const std::string& id) {
    if (id.empty() || id.size() > 128 || !is_valid_utf8(id)) return false;
    for (const char c : id) {
        if (c == '/' || c == '+' || c == '#' || static_cast<unsigned char>(c) < 0x20) return false;
    }
    return true;
}

void check_request(client_request& request, const decode_limits& limits) {
    if (auto* p = std::get_if<publish_request>(&request)) {
        expect(p->qos <= 2, "publish qos out of range");
        expect(p->qos == 0 || !p->id.empty(), "qos >= 1 publish without msgid");
        expect(p->payload.size() <= limits.max_payload_bytes, "payload over the limit");
        check_msgid(p->id);
    } else if (auto* s = std::get_if<subscribe_request>(&request)) {
        expect(s->qos <= 2, "subscribe qos out of range");
        expect(!s->filters.empty() && s->filters.size() <= limits.max_filters_per_request,
               "subscribe filter count");
        check_msgid(s->id);
    } else if (auto* u = std::get_if<unsubscribe_request>(&request)) {
        expect(!u->filters.empty() && u->filters.size() <= limits.max_filters_per_request,
               "unsubscribe filter count");
        check_msgid(u->id);
    } else if (auto* a = std::get_if<auth_request>(&request)) {
        expect(!a->is_device || valid_client_id(a->client_id), "device id not valid");
        expect(a->client_id.empty() || valid_client_id(a->client_id), "client id not valid",
               a->client_id);
        check_msgid(a->id);
        check_frame(encode_auth_response(a->client_id, a->session, true, true, 0, a->id));
        // With engine shards the first auth picks the shard that serves the connection.
        for (const std::size_t shards : {1, 3, 16}) {
            const auto k = shard_for_auth(*a, shards);
            expect(!k || *k < shards, "shard_for_auth names no such shard", a->session);
            expect(!a->is_device || k.has_value(), "a device without a shard", a->client_id);
        }
    } else if (auto* d = std::get_if<device_report_request>(&request)) {
        expect(valid_client_id(d->device_id), "device id not valid", d->device_id);
        // frame_json is published upstream, not sent as a text frame: it must be JSON, but may
        // hold what RapidJSON 1.1 makes of a lone "\udc00" escape (invalid UTF-8 bytes).
        rapidjson::Document report;
        report.Parse(d->frame_json.data(), d->frame_json.size());
        expect(!report.HasParseError() && report.IsObject(), "frame_json is not a JSON object",
               d->frame_json);
        check_msgid(d->id);
    } else if (auto* ping = std::get_if<ping_request>(&request)) {
        check_msgid(ping->id);
        check_frame(encode_pong(0, ping->id));
    }
}

void check_decode(std::string_view text) {
    // One decoder for the whole run, as the bridge keeps one per thread: its reused buffers
    // must not leak state from one frame into the next.
    static frame_decoder decoder;
    static const decode_limits limits;
    auto result = decoder.decode(text);
    if (auto* failure = std::get_if<decode_failure>(&result)) {
        expect(!failure->message.empty(), "decode_failure without a message");
        check_msgid(failure->id);
        check_frame(encode_error(failure->code, failure->message, failure->id));
        check_frame(encode_ack_error(failure->id, failure->code, failure->message));
        return;
    }
    check_request(std::get<client_request>(result), limits);
}

void check_binary(std::string_view frame) {
    auto decoded = decode_binary_publish(frame, 1u << 20);
    const auto* p = std::get_if<publish_request>(&decoded);
    if (p == nullptr) return;
    const message_body body("message", p->topic, p->payload, p->retain, 1);
    delivery_fields fields;
    fields.qos = p->qos;
    fields.msgid = 7;
    const split_frame split = body.binary(fields);
    const std::string out = split.head.str() + *split.shared;
    // 24-byte header, then the topic (length at 22..23) and the payload.
    expect(out.size() == 24 + p->topic.size() + p->payload.size(), "binary frame size", out);
    const std::size_t topic_len =
        (static_cast<unsigned char>(out[22]) << 8) | static_cast<unsigned char>(out[23]);
    expect(topic_len == p->topic.size(), "binary topic length", out);
    expect(out.compare(24, topic_len, p->topic) == 0, "binary topic", out);
    expect(out.compare(24 + topic_len, std::string::npos, p->payload) == 0, "binary payload", out);
}

void check_message_body(std::string_view payload, bool retain) {
    const message_body body("message", "fuzz/topic", std::string(payload), retain, 1700000000000);
    delivery_fields fields;
    fields.qos = static_cast<std::uint8_t>(payload.size() % 3);
    fields.msgid = payload.size();
    fields.seq = payload.size() / 2;
    fields.dup = retain;
    const std::string frame = body.finish(fields);
    const split_frame split = body.json(fields);
    expect(split.head.str() + *split.shared == frame, "split frame equals the whole frame", frame);
    rapidjson::Document doc;
    parse_frame(frame, doc);

    const auto it = doc.FindMember("payload");
    expect(it != doc.MemberEnd(), "message frame without payload", frame);
    const rapidjson::Value& value = it->value;
    const auto encoding = doc.FindMember("encoding");
    if (encoding != doc.MemberEnd()) {
        expect(
            encoding->value.IsString() && std::string_view(encoding->value.GetString()) == "base64",
            "unexpected encoding", frame);
        expect(value.IsString(), "base64 payload is not a string", frame);
        const auto bytes = base64::decode({value.GetString(), value.GetStringLength()});
        expect(bytes.has_value() && *bytes == payload, "base64 payload does not round-trip", frame);
        expect(!is_valid_utf8(payload), "valid UTF-8 was sent as base64", frame);
        return;
    }
    if (value.IsString() &&
        std::string_view(value.GetString(), value.GetStringLength()) == payload) {
        return;  // sent as text
    }
    // Embedded as JSON: the payload must itself be that JSON text.
    rapidjson::Document original;
    original.Parse<rapidjson::kParseValidateEncodingFlag>(payload.data(), payload.size());
    // Compared as compact text, not with operator==, which finds duplicate keys by name.
    expect(!original.HasParseError() && compact(original) == compact(value),
           "embedded payload is not the JSON text it came from", frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_decode(text);
    check_message_body(text, size % 2 == 0);
    check_binary(text);
    return 0;
}
