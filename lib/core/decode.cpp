// Decoding of client frames into requests (requests.hpp): one function per frame type, over a
// RapidJSON document whose nodes live in a pool reused between frames.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "core/base64.hpp"
#include "core/json_fields.hpp"
#include "core/requests.hpp"
#include "core/text.hpp"

namespace mqttws {
namespace {

using namespace json_fields;

// ---- one decoder per frame type ----

std::variant<client_request, field_error> decode_auth(const value& obj, msg_id id,
                                                      const decode_limits& limits) {
    auth_request r;
    r.id = std::move(id);
    std::string device_id;
    if (auto e = read_string(obj, "clientId", r.client_id)) return *e;
    if (auto e = read_string(obj, "deviceId", device_id)) return *e;
    if (!device_id.empty() || find(obj, "deviceId") != nullptr) {
        if (!r.client_id.empty() && r.client_id != device_id) {
            return field_error{errc::bad_request,
                               "'clientId' and 'deviceId' differ; give one of them"};
        }
        r.client_id = device_id;
        r.is_device = true;
    }
    if ((find(obj, "clientId") != nullptr || r.is_device) && !is_valid_client_id(r.client_id)) {
        return field_error{errc::bad_request,
                           "a client id must be 1 to 128 characters of UTF-8 "
                           "without '/', '+', '#' or control characters"};
    }
    if (auto e = read_string(obj, "token", r.token)) return *e;
    if (auto e = read_string(obj, "username", r.username)) return *e;
    if (auto e = read_string(obj, "password", r.password)) return *e;
    if (auto e = read_string(obj, "session", r.session)) return *e;
    if (auto e = read_bool(obj, "resume", r.resume)) return *e;
    if (auto e = read_bool(obj, "heartbeat", r.heartbeat)) return *e;
    if (auto e = read_bool(obj, "commands", r.commands)) return *e;
    if (auto e = read_will(obj, limits, r.will)) return *e;
    if (const value* seq = find(obj, "lastSeq")) {
        if (!seq->IsUint64())
            return field_error{errc::bad_request, "'lastSeq' must be a non-negative integer"};
        r.last_seq = seq->GetUint64();
    }
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_subscribe(const value& obj, msg_id id,
                                                           const decode_limits& limits) {
    subscribe_request r;
    r.id = std::move(id);
    if (auto e = read_filters(obj, limits, r.filters)) return *e;
    if (auto e = read_qos(obj, r.qos)) return *e;
    if (auto e = read_subscription_options(obj, r.options)) return *e;
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_publish(const value& obj, msg_id id,
                                                         const decode_limits& limits);

// Each entry is a publish frame of its own (its `type` may be left out).
std::variant<client_request, field_error> decode_batch(const value& obj, msg_id batch_id,
                                                       const decode_limits& limits) {
    const value* list = find(obj, "messages");
    if (list == nullptr || !list->IsArray()) {
        return field_error{errc::bad_request, "'messages' must be an array of publish frames"};
    }
    if (list->Size() > limits.max_batch) {
        return field_error{errc::too_large, "a batch holds at most " +
                                                std::to_string(limits.max_batch) + " messages"};
    }
    batch_request r;
    r.id = std::move(batch_id);
    if (auto e = read_signature_fields(obj, r.proof)) return *e;
    for (const auto& entry : list->GetArray()) {
        msg_id id;
        if (!entry.IsObject()) {
            r.entries.emplace_back(
                decode_failure{errc::bad_request, "a batch entry must be a publish frame", {}});
            continue;
        }
        if (auto problem = read_msgid(entry, limits, id)) {
            r.entries.emplace_back(decode_failure{problem->code, problem->message, {}});
            continue;
        }
        const value* type = find(entry, "type");
        if (type != nullptr && !(type->IsString() && view(*type) == "publish")) {
            r.entries.emplace_back(
                decode_failure{errc::bad_request, "a batch may only hold publish frames", id});
            continue;
        }
        auto decoded = decode_publish(entry, id, limits);
        if (auto* e = std::get_if<field_error>(&decoded)) {
            r.entries.emplace_back(decode_failure{e->code, std::move(e->message), std::move(id)});
        } else {
            r.entries.emplace_back(
                std::get<publish_request>(std::get<client_request>(std::move(decoded))));
        }
    }
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_unsubscribe(const value& obj, msg_id id,
                                                             const decode_limits& limits) {
    unsubscribe_request r;
    r.id = std::move(id);
    if (auto e = read_filters(obj, limits, r.filters)) return *e;
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_publish(const value& obj, msg_id id,
                                                         const decode_limits& limits) {
    publish_request r;
    r.id = std::move(id);
    const value* topic = find(obj, "topic");
    if (topic == nullptr || !topic->IsString()) {
        return field_error{errc::bad_request, "'topic' is required and must be a string"};
    }
    r.topic.assign(topic->GetString(), topic->GetStringLength());
    if (auto e = read_qos(obj, r.qos)) return *e;
    if (auto e = read_bool(obj, "retain", r.retain)) return *e;
    if (auto e = read_bool(obj, "dup", r.dup)) return *e;
    if (auto e = read_signature_fields(obj, r.proof)) return *e;
    if (r.qos > 0 && r.id.empty()) {
        return field_error{errc::bad_request,
                           "'msgid' is required for qos 1 and 2 (the ack refers to it)"};
    }
    if (auto e = read_payload(obj, limits, r.payload)) return *e;
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_ack(const value& obj) {
    const value* v = find(obj, "msgid");
    ack_request r;
    if (v != nullptr && v->IsUint64()) {
        r.delivery_id = v->GetUint64();
        return client_request{r};
    }
    if (v != nullptr && v->IsString()) {
        // Accept the id as a decimal string too ("17"), as some clients stringify ids.
        const std::string_view s = view(*v);
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), r.delivery_id);
        if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) return client_request{r};
    }
    return field_error{errc::bad_request,
                       "an ack needs the numeric 'msgid' of the delivery it acknowledges"};
}

std::variant<client_request, field_error> decode_device_report(const value& obj, msg_id id,
                                                               device_report_request::kind what) {
    device_report_request r;
    r.what = what;
    r.id = std::move(id);
    const value* device = find(obj, "deviceId");
    if (device == nullptr || !device->IsString() || !is_valid_client_id(view(*device))) {
        return field_error{errc::bad_request,
                           "'deviceId' is required: 1 to 128 characters without '/', '+', '#'"};
    }
    r.device_id.assign(device->GetString(), device->GetStringLength());
    if (auto e = read_signature_fields(obj, r.proof)) return *e;
    r.frame_json = compact_json(obj);
    return client_request{std::move(r)};
}

}  // namespace

// ---- frame_decoder ----

struct frame_decoder::impl {
    // The DOM's nodes live in a pool that is reset, not freed, between frames.
    std::array<char, 16 * 1024> first_chunk{};
    rj::CrtAllocator base;
};

frame_decoder::frame_decoder(decode_limits limits)
    : limits_(limits), impl_(std::make_unique<impl>()) {}
frame_decoder::~frame_decoder() = default;

std::variant<client_request, decode_failure> frame_decoder::decode(std::string_view text) {
    if (json_nesting_exceeds(text, limits_.max_depth)) {
        return decode_failure{errc::too_large,
                              "JSON nesting is deeper than " + std::to_string(limits_.max_depth),
                              {}};
    }
    pool_allocator pool(impl_->first_chunk.data(), impl_->first_chunk.size(), 64 * 1024,
                        &impl_->base);
    document doc(&pool);
    doc.Parse<parse_flags>(text.data(), text.size());
    if (doc.HasParseError()) {
        return decode_failure{errc::bad_request,
                              std::string("invalid JSON at offset ") +
                                  std::to_string(doc.GetErrorOffset()) + ": " +
                                  rj::GetParseError_En(doc.GetParseError()),
                              {}};
    }
    if (!doc.IsObject()) {
        return decode_failure{errc::bad_request, "a frame must be a JSON object", {}};
    }
    msg_id id;
    if (auto problem = read_msgid(doc, limits_, id)) {
        return decode_failure{problem->code, problem->message, {}};
    }

    if (!strings_are_utf8(doc)) {
        // RapidJSON 1.1 decodes a lone "\udc00".."\udfff" escape into bytes that are not UTF-8.
        return decode_failure{
            errc::bad_request,
            "a string holds a \\u escape of a lone UTF-16 surrogate (not a character)", id};
    }

    const value* type = find(doc, "type");
    if (type == nullptr || !type->IsString()) {
        return decode_failure{errc::bad_request, "a frame needs a 'type' string", id};
    }
    const std::string_view t = view(*type);
    std::variant<client_request, field_error> result = field_error{errc::internal, {}};
    if (t == "publish") {
        result = decode_publish(doc, id, limits_);
    } else if (t == "subscribe") {
        result = decode_subscribe(doc, id, limits_);
    } else if (t == "unsubscribe") {
        result = decode_unsubscribe(doc, id, limits_);
    } else if (t == "ack") {
        result = decode_ack(doc);
    } else if (t == "ping") {
        result = client_request{ping_request{id}};
    } else if (t == "auth") {
        result = decode_auth(doc, id, limits_);
    } else if (t == "status") {
        result = decode_device_report(doc, id, device_report_request::kind::status);
    } else if (t == "event") {
        result = decode_device_report(doc, id, device_report_request::kind::event);
    } else if (t == "batch") {
        result = decode_batch(doc, id, limits_);
    } else if (t == "command") {
        result = decode_command(doc, id, limits_);
    } else if (t == "command_result" || t == "command_progress") {
        result = decode_command_result(doc, id, t == "command_progress");
    } else if (t == "refresh") {
        refresh_request r;
        r.id = id;
        const value* token = find(doc, "token");
        if (token == nullptr || !token->IsString() || token->GetStringLength() == 0) {
            result = field_error{errc::bad_request, "'token' is required and must be a string"};
        } else {
            r.token.assign(token->GetString(), token->GetStringLength());
            result = client_request{std::move(r)};
        }
    } else {
        // The name is shown cut to 64 bytes at a character boundary, and only when it is valid
        // UTF-8 (a "\udc00" escape yields a lone surrogate): the message goes into a text frame.
        std::size_t cut = std::min<std::size_t>(t.size(), 64);
        while (cut > 0 && cut < t.size() && (static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) {
            --cut;
        }
        const std::string_view shown = t.substr(0, cut);
        return decode_failure{errc::unsupported,
                              is_valid_utf8(shown)
                                  ? "unknown frame type '" + std::string(shown) + "'"
                                  : std::string("unknown frame type"),
                              id};
    }
    if (auto* error = std::get_if<field_error>(&result)) {
        return decode_failure{error->code, std::move(error->message), std::move(id)};
    }
    return std::get<client_request>(std::move(result));
}

decoded_frame frame_decoder::decode_for_engine(std::string_view text) {
    decoded_frame out{decode(text), {}, false};
    const auto* request = std::get_if<client_request>(&out.result);
    const signature_fields* proof = request != nullptr ? signature_proof(*request) : nullptr;
    if (proof != nullptr && proof->sig) out.signable_text.assign(text);
    return out;
}

decoded_frame frame_decoder::decode_binary_for_engine(std::string_view frame) const {
    auto decoded = decode_binary_publish(frame, limits_.max_payload_bytes);
    if (auto* failure = std::get_if<decode_failure>(&decoded))
        return decoded_frame{std::move(*failure), {}, true};
    return decoded_frame{client_request{std::get<publish_request>(std::move(decoded))}, {}, true};
}

const signature_fields* signature_proof(const client_request& request) {
    if (const auto* p = std::get_if<publish_request>(&request)) return &p->proof;
    if (const auto* d = std::get_if<device_report_request>(&request)) return &d->proof;
    if (const auto* b = std::get_if<batch_request>(&request)) return &b->proof;
    return nullptr;
}

bool publishes(const client_request& request, bool binary) {
    return binary || signature_proof(request) != nullptr;
}

std::variant<publish_request, decode_failure> decode_binary_publish(std::string_view frame,
                                                                    std::size_t max_payload_bytes) {
    const auto fail = [](std::string message) {
        return decode_failure{errc::bad_request, "binary frame: " + std::move(message), {}};
    };
    if (frame.size() < 8) return fail("shorter than its 8-byte header");
    const auto byte = [&](std::size_t i) {
        return static_cast<std::uint32_t>(static_cast<unsigned char>(frame[i]));
    };
    if (byte(0) != 0x01) return fail("the first byte must be 0x01 (publish)");
    const std::uint32_t flags = byte(1);
    if ((flags & 3u) == 3u || (flags & ~0x0Fu) != 0) return fail("invalid flags byte");
    publish_request r;
    r.qos = static_cast<std::uint8_t>(flags & 3u);
    r.retain = (flags & 4u) != 0;
    r.dup = (flags & 8u) != 0;
    const std::uint32_t msgid = (byte(2) << 24) | (byte(3) << 16) | (byte(4) << 8) | byte(5);
    const std::size_t topic_len = (byte(6) << 8) | byte(7);
    if (frame.size() < 8 + topic_len)
        return fail("the topic length runs past the end of the frame");
    r.topic.assign(frame.substr(8, topic_len));
    r.payload.assign(frame.substr(8 + topic_len));
    if (msgid != 0) r.id.json = std::to_string(msgid);
    if (r.qos > 0 && msgid == 0) {
        return decode_failure{
            errc::bad_request, "binary frame: qos 1 and 2 need a non-zero msgid", {}};
    }
    if (r.payload.size() > max_payload_bytes) {
        return decode_failure{errc::too_large,
                              "payload is " + std::to_string(r.payload.size()) +
                                  " bytes; the limit is " + std::to_string(max_payload_bytes),
                              r.id};
    }
    return r;
}

}  // namespace mqttws
