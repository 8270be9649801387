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
    : control_(frame_type == "control"),
      topic_(std::move(topic)),
      payload_(std::move(payload)),
      retain_(retain),
      timestamp_ms_(timestamp_ms),
      max_embed_depth_(max_embed_depth),
      redelivered_(redelivered) {}

const std::string& message_body::json_prefix() const {
    if (!prefix_.empty()) return prefix_;
    prefix_.reserve(payload_.size() + topic_.size() + 96);
    prefix_ += control_ ? R"({"type":"control","topic":)" : R"({"type":"message","topic":)";
    append_json_string(prefix_, topic_);
    prefix_ += ",\"payload\":";
    if (is_json_text(payload_, max_embed_depth_)) {
        prefix_ += payload_;
    } else if (is_valid_utf8(payload_)) {
        append_json_string(prefix_, payload_);
    } else {
        prefix_ += '"';
        base64::encode_append(payload_, prefix_);
        prefix_ += R"(","encoding":"base64")";
    }
    prefix_ += retain_ ? ",\"retain\":true" : ",\"retain\":false";
    prefix_ += ",\"timestamp\":";
    append_int(prefix_, timestamp_ms_);
    return prefix_;
}

std::string message_body::finish(const delivery_fields& fields) const {
    const std::string& prefix = json_prefix();
    std::string out;
    out.reserve(prefix.size() + 64);
    out += prefix;
    out += ",\"qos\":";
    append_uint(out, fields.qos);
    if (fields.qos > 0) {
        out += ",\"msgid\":";
        append_uint(out, fields.msgid);
    }
    if (fields.seq != 0) {
        out += ",\"seq\":";
        append_uint(out, fields.seq);
    }
    if (fields.dup || redelivered_) out += ",\"dup\":true";
    out += '}';
    return out;
}

std::string message_body::finish_binary(const delivery_fields& fields) const {
    // Layout: docs/protocol.md, "Binary frames". All integers big-endian.
    std::string out;
    out.reserve(24 + topic_.size() + payload_.size());
    const auto put = [&out](std::uint64_t v, int bytes) {
        for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
            out += static_cast<char>((v >> shift) & 0xFF);
    };
    put(control_ ? 0x03 : 0x02, 1);
    put((fields.qos & 3u) | (retain_ ? 4u : 0u) | ((fields.dup || redelivered_) ? 8u : 0u), 1);
    put(fields.qos > 0 ? fields.msgid : 0, 4);
    put(fields.seq, 8);
    put(static_cast<std::uint64_t>(timestamp_ms_), 8);
    put(topic_.size(), 2);
    out += topic_;
    out += payload_;
    return out;
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
