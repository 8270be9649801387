// Reading the fields of a client's JSON frame: the helpers every frame decoder uses (decode.cpp,
// decode_devices.cpp), each giving a clear message naming the field when it is wrong.
// Internal to the decoders. Thread safety: pure functions.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/base64.hpp"
#include "core/error.hpp"
#include "core/requests.hpp"
#include "core/text.hpp"

namespace mqttws::json_fields {

namespace rj = rapidjson;

constexpr unsigned parse_flags = rj::kParseValidateEncodingFlag | rj::kParseIterativeFlag;

using pool_allocator = rj::MemoryPoolAllocator<rj::CrtAllocator>;
using document = rj::GenericDocument<rj::UTF8<>, pool_allocator, rj::CrtAllocator>;
using value = document::ValueType;

// ---- helpers for reading fields ----

struct field_error {
    errc code;
    std::string message;
};

inline std::string_view view(const value& v) {
    return {v.GetString(), v.GetStringLength()};
}

inline const value* find(const value& obj, const char* name) {
    const auto it = obj.FindMember(name);
    return it == obj.MemberEnd() ? nullptr : &it->value;
}

inline std::string compact_json(const value& v) {
    rj::StringBuffer buffer;
    rj::Writer<rj::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
}

// Optional string field; error when present with another type.
inline std::optional<field_error> read_string(const value& obj, const char* name,
                                              std::string& out) {
    const value* v = find(obj, name);
    if (v == nullptr) return std::nullopt;
    if (!v->IsString())
        return field_error{errc::bad_request, std::string("'") + name + "' must be a string"};
    out.assign(v->GetString(), v->GetStringLength());
    return std::nullopt;
}

inline std::optional<field_error> read_bool(const value& obj, const char* name, bool& out) {
    const value* v = find(obj, name);
    if (v == nullptr) return std::nullopt;
    if (!v->IsBool())
        return field_error{errc::bad_request, std::string("'") + name + "' must be true or false"};
    out = v->GetBool();
    return std::nullopt;
}

inline std::optional<field_error> read_qos(const value& obj, std::uint8_t& out) {
    const value* v = find(obj, "qos");
    if (v == nullptr) return std::nullopt;
    if (!v->IsInt() || v->GetInt() < 0 || v->GetInt() > 2) {
        return field_error{errc::bad_request, "'qos' must be 0, 1 or 2"};
    }
    out = static_cast<std::uint8_t>(v->GetInt());
    return std::nullopt;
}

// `topic` (one) or `topics` (a non-empty array of strings); exactly one of them.
inline std::optional<field_error> read_filters(const value& obj, const decode_limits& limits,
                                               std::vector<std::string>& out) {
    const value* one = find(obj, "topic");
    const value* many = find(obj, "topics");
    if ((one == nullptr) == (many == nullptr)) {
        return field_error{errc::bad_request,
                           "give either 'topic' (a string) or 'topics' (an array of strings)"};
    }
    if (one != nullptr) {
        if (!one->IsString()) return field_error{errc::bad_request, "'topic' must be a string"};
        out.emplace_back(one->GetString(), one->GetStringLength());
        return std::nullopt;
    }
    if (!many->IsArray() || many->Empty()) {
        return field_error{errc::bad_request, "'topics' must be a non-empty array of strings"};
    }
    if (many->Size() > limits.max_filters_per_request) {
        return field_error{errc::too_large, "'topics' has more than " +
                                                std::to_string(limits.max_filters_per_request) +
                                                " entries"};
    }
    for (const auto& f : many->GetArray()) {
        if (!f.IsString())
            return field_error{errc::bad_request, "'topics' must be a non-empty array of strings"};
        out.emplace_back(f.GetString(), f.GetStringLength());
    }
    return std::nullopt;
}

// Every string (and member name) in `v` is UTF-8. Parsing validates the raw bytes, but not
// what \u escapes decode to. Nesting is bounded (json_nesting_exceeds) before parsing.
inline bool strings_are_utf8(const value& v) {
    if (v.IsString()) return is_valid_utf8(view(v));
    if (v.IsArray()) {
        for (const auto& e : v.GetArray()) {
            if (!strings_are_utf8(e)) return false;
        }
    } else if (v.IsObject()) {
        for (const auto& m : v.GetObject()) {
            if (!is_valid_utf8(view(m.name)) || !strings_are_utf8(m.value)) return false;
        }
    }
    return true;
}

// The optional `msgid` of a request, as JSON text.
inline std::optional<field_error> read_msgid(const value& obj, const decode_limits& limits,
                                             msg_id& out) {
    const value* v = find(obj, "msgid");
    if (v == nullptr) return std::nullopt;
    if (v->IsString() && v->GetStringLength() <= limits.max_msgid_bytes &&
        is_valid_utf8(view(*v))) {
        out.json.reserve(v->GetStringLength() + 2);
        append_json_string(out.json, view(*v));
    } else if (v->IsInt64() || v->IsUint64()) {
        out.json = compact_json(*v);
    } else {
        return field_error{errc::bad_request, "'msgid' must be a string of at most " +
                                                  std::to_string(limits.max_msgid_bytes) +
                                                  " bytes or an integer"};
    }
    return std::nullopt;
}

inline std::optional<field_error> read_subscription_options(const value& obj,
                                                            subscription_options& o) {
    if (const value* v = find(obj, "maxRate")) {
        if (!v->IsNumber() || v->GetDouble() <= 0 || v->GetDouble() > 1e6) {
            return field_error{errc::bad_request,
                               "'maxRate' must be a number of messages per second above 0"};
        }
        o.max_rate = v->GetDouble();
    }
    if (auto e = read_bool(obj, "conflate", o.conflate)) return e;
    if (auto e = read_bool(obj, "binary", o.binary)) return e;
    if (const value* b = find(obj, "batch")) {
        const value* n = b->IsObject() ? find(*b, "maxMessages") : nullptr;
        const value* d = b->IsObject() ? find(*b, "maxDelayMs") : nullptr;
        if (n == nullptr || !n->IsUint() || n->GetUint() < 1 || n->GetUint() > 1000 ||
            (d != nullptr && (!d->IsUint() || d->GetUint() > 60000))) {
            return field_error{
                errc::bad_request,
                "'batch' must be {\"maxMessages\": 1..1000, \"maxDelayMs\": 0..60000}"};
        }
        o.batch_max = static_cast<std::uint16_t>(n->GetUint());
        o.batch_delay_ms = d != nullptr ? d->GetUint() : 0;
    }
    return std::nullopt;
}

// `ts`, `nonce` and `sig` of a frame that may be signed (they are checked by the engine).
inline std::optional<field_error> read_signature_fields(const value& obj, signature_fields& out) {
    if (const value* ts = find(obj, "ts")) {
        if (!ts->IsInt64()) {
            return field_error{errc::bad_request, "'ts' must be an integer (ms since 1970)"};
        }
        out.ts = ts->GetInt64();
    }
    if (auto e = read_string(obj, "nonce", out.nonce)) return e;
    if (const value* sig = find(obj, "sig")) {
        if (!sig->IsString()) return field_error{errc::bad_request, "'sig' must be a string"};
        out.sig = std::string(view(*sig));
    }
    return std::nullopt;
}

// `payload` (any JSON: a string is sent as its text, anything else as compact JSON) with its
// optional `encoding` ("base64": the string is base64 of the bytes), at most max_payload_bytes.
inline std::optional<field_error> read_payload(const value& obj, const decode_limits& limits,
                                               std::string& out) {
    std::string encoding;
    if (auto e = read_string(obj, "encoding", encoding)) return e;
    if (!encoding.empty() && encoding != "base64" && encoding != "utf8") {
        return field_error{errc::bad_request, "'encoding' must be \"base64\" or \"utf8\""};
    }
    if (const value* payload = find(obj, "payload")) {
        if (encoding == "base64") {
            if (!payload->IsString()) {
                return field_error{errc::bad_request, "a base64 'payload' must be a string"};
            }
            auto bytes = base64::decode(view(*payload));
            if (!bytes) return field_error{errc::bad_request, "'payload' is not valid base64"};
            out = std::move(*bytes);
        } else if (payload->IsString()) {
            out.assign(payload->GetString(), payload->GetStringLength());
        } else {
            out = compact_json(*payload);
        }
    }
    if (out.size() > limits.max_payload_bytes) {
        return field_error{errc::too_large, "payload is " + std::to_string(out.size()) +
                                                " bytes; the limit is " +
                                                std::to_string(limits.max_payload_bytes)};
    }
    return std::nullopt;
}

// An optional integer field within [min, max].
inline std::optional<field_error> read_int(const value& obj, const char* name, std::int64_t min,
                                           std::int64_t max, std::int64_t& out) {
    const value* v = find(obj, name);
    if (v == nullptr) return std::nullopt;
    if (!v->IsInt64() || v->GetInt64() < min || v->GetInt64() > max) {
        return field_error{errc::bad_request,
                           std::string("'") + name + "' must be an integer from " +
                               std::to_string(min) + " to " + std::to_string(max)};
    }
    out = v->GetInt64();
    return std::nullopt;
}

// ---- the decoders of the device frames (decode_devices.cpp) ----

// The optional `will` of an auth frame.
std::optional<field_error> read_will(const value& obj, const decode_limits& limits,
                                     std::optional<last_will>& out);
std::variant<client_request, field_error> decode_command(const value& obj, msg_id id,
                                                         const decode_limits& limits);
// `command_result` and `command_progress` (progress: true).
std::variant<client_request, field_error> decode_command_result(const value& obj, msg_id id,
                                                                bool progress);

}  // namespace mqttws::json_fields
