#include "core/message_body.hpp"

#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <cstring>

#include "core/base64.hpp"
#include "core/text.hpp"

namespace mqttws {
namespace {

namespace rj = rapidjson;

constexpr unsigned parse_flags = rj::kParseValidateEncodingFlag | rj::kParseIterativeFlag;

bool looks_like_json_start(std::string_view s) {
    for (const char c : s) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        return std::strchr("{[\"-0123456789tfn", c) != nullptr && c != '\0';
    }
    return false;
}

bool is_json_text(std::string_view s, std::size_t max_depth) {
    if (!looks_like_json_start(s) || json_nesting_exceeds(s, max_depth)) return false;
    // A raw NUL is never part of JSON text, but RapidJSON's stream reads it as the end of input
    // ("1\0x" would parse as 1 and then be embedded whole): such a payload is not JSON.
    if (s.find('\0') != std::string_view::npos) return false;
    rj::Reader reader;
    rj::BaseReaderHandler<> ignore;
    rj::MemoryStream stream(s.data(), s.size());
    rj::EncodedInputStream<rj::UTF8<>, rj::MemoryStream> input(stream);
    return !reader.Parse<parse_flags>(input, ignore).IsError();
}

}  // namespace

// ---- message_body ----

message_body::message_body(std::string_view frame_type, std::string topic, std::string payload,
                           bool retain, std::int64_t timestamp_ms, std::size_t max_embed_depth,
                           bool redelivered)
    : kind_(frame_type == "control"   ? kind::control
            : frame_type == "command" ? kind::command
                                      : kind::message),
      topic_(std::move(topic)),
      payload_(std::move(payload)),
      retain_(retain),
      timestamp_ms_(timestamp_ms),
      max_embed_depth_(max_embed_depth),
      redelivered_(redelivered) {}

frame_head message_body::json_head(const delivery_fields& fields) const {
    frame_head out;
    switch (kind_) {
        case kind::message:
            out.append_literal(R"({"type":"message","qos":)");
            break;
        case kind::control:
            out.append_literal(R"({"type":"control","qos":)");
            break;
        case kind::command:
            out.append_literal(R"({"type":"command","qos":)");
            break;
    }
    out.append_uint(fields.qos);
    if (fields.qos > 0) {
        out.append_literal(",\"msgid\":");
        out.append_uint(fields.msgid);
    }
    if (fields.seq != 0) {
        out.append_literal(",\"seq\":");
        out.append_uint(fields.seq);
    }
    if (fields.dup || redelivered_) out.append_literal(",\"dup\":true");
    out.push_back(',');
    return out;
}

std::shared_ptr<const message_body> message_body::command(std::string topic, std::string members,
                                                          std::int64_t timestamp_ms,
                                                          std::string command_id) {
    auto body = std::make_shared<message_body>("command", std::move(topic), std::move(members),
                                               false, timestamp_ms);
    body->command_id_ = std::move(command_id);
    return body;
}

const std::shared_ptr<const std::string>& message_body::json_rest() const {
    if (json_rest_) return json_rest_;
    std::string rest;
    if (kind_ == kind::command) {
        rest.reserve(payload_.size() + 40);
        rest += payload_;
        rest += ",\"timestamp\":";
        append_int(rest, timestamp_ms_);
        rest += '}';
        json_rest_ = std::make_shared<const std::string>(std::move(rest));
        return json_rest_;
    }
    rest.reserve(payload_.size() + topic_.size() + 64);
    rest += "\"topic\":";
    append_json_string(rest, topic_);
    rest += ",\"payload\":";
    if (is_json_text(payload_, max_embed_depth_)) {
        rest += payload_;
    } else if (is_valid_utf8(payload_)) {
        append_json_string(rest, payload_);
    } else {
        rest += '"';
        base64::encode_append(payload_, rest);
        rest += R"(","encoding":"base64")";
    }
    rest += retain_ ? ",\"retain\":true" : ",\"retain\":false";
    rest += ",\"timestamp\":";
    append_int(rest, timestamp_ms_);
    rest += '}';
    json_rest_ = std::make_shared<const std::string>(std::move(rest));
    return json_rest_;
}

split_frame message_body::json(const delivery_fields& fields) const {
    return split_frame{json_head(fields), json_rest()};
}

std::string message_body::finish(const delivery_fields& fields) const {
    const std::string& rest = *json_rest();
    const frame_head head = json_head(fields);
    std::string out;
    out.reserve(head.size() + rest.size());
    out += head.view();
    out += rest;
    return out;
}

split_frame message_body::binary(const delivery_fields& fields) const {
    // Layout: docs/protocol.md, "Binary frames". All integers big-endian.
    const auto put = [](auto& out, std::uint64_t v, int bytes) {
        for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
            out.push_back(static_cast<char>((v >> shift) & 0xFF));
    };
    if (!binary_rest_) {
        std::string rest;
        rest.reserve(10 + topic_.size() + payload_.size());
        put(rest, static_cast<std::uint64_t>(timestamp_ms_), 8);
        put(rest, topic_.size(), 2);
        rest += topic_;
        rest += payload_;
        binary_rest_ = std::make_shared<const std::string>(std::move(rest));
    }
    frame_head head;
    put(head, kind_ == kind::message ? 0x02 : 0x03, 1);
    put(head, (fields.qos & 3u) | (retain_ ? 4u : 0u) | ((fields.dup || redelivered_) ? 8u : 0u),
        1);
    put(head, fields.qos > 0 ? fields.msgid : 0, 4);
    put(head, fields.seq, 8);
    return split_frame{std::move(head), binary_rest_};
}

const std::shared_ptr<const std::string>& message_body::shared_qos0() const {
    if (!shared_qos0_) shared_qos0_ = std::make_shared<const std::string>(finish({}));
    return shared_qos0_;
}

std::string encode_batch(const std::vector<std::string>& messages) {
    std::size_t size = 32;
    for (const auto& m : messages)
        size += m.size() + 1;
    std::string out;
    out.reserve(size);
    out += R"({"type":"batch","messages":[)";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i > 0) out += ',';
        out += messages[i];
    }
    out += "]}";
    return out;
}

}  // namespace mqttws
