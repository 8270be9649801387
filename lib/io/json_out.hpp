// The JSON documents the edge writes — /healthz, /clients, JSON log lines, audit records — built
// with RapidJSON's Writer, so that escaping is never done by hand.
//
// (The wire frames are written by core/replies.cpp and core/message_body.cpp instead: they are
// the hot path, are laid out to be shared between recipients, and have their own round-trip
// fuzz target.)
//
// Thread safety: a value type; one per document.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace mqttws {

// One JSON object, written field by field: `json_out().field("a", 1).field("b", "x").line()`
// gives `{"a":1,"b":"x"}\n`. Nested arrays of objects go through open_array / open_object.
class json_out {
  public:
    json_out() : writer_(buffer_) { writer_.StartObject(); }

    json_out& field(std::string_view key, std::string_view value) {
        key_(key);
        writer_.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
        return *this;
    }
    json_out& field(std::string_view key, const char* value) {
        return field(key, std::string_view(value));
    }
    json_out& field(std::string_view key, const std::string& value) {
        return field(key, std::string_view(value));
    }
    json_out& field(std::string_view key, bool value) {
        key_(key);
        writer_.Bool(value);
        return *this;
    }
    json_out& field(std::string_view key, std::uint64_t value) {
        key_(key);
        writer_.Uint64(value);
        return *this;
    }
    json_out& field(std::string_view key, std::int64_t value) {
        key_(key);
        writer_.Int64(value);
        return *this;
    }
    json_out& field(std::string_view key, int value) {
        return field(key, static_cast<std::int64_t>(value));
    }

    json_out& open_array(std::string_view key) {
        key_(key);
        writer_.StartArray();
        return *this;
    }
    json_out& close_array() {
        writer_.EndArray();
        return *this;
    }
    json_out& open_object() {
        writer_.StartObject();
        return *this;
    }
    json_out& close_object() {
        writer_.EndObject();
        return *this;
    }

    // The finished object followed by a newline (every document the edge writes is a line).
    std::string line() {
        writer_.EndObject();
        std::string out(buffer_.GetString(), buffer_.GetSize());
        out += '\n';
        return out;
    }

  private:
    void key_(std::string_view key) {
        writer_.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    }

    rapidjson::StringBuffer buffer_;
    rapidjson::Writer<rapidjson::StringBuffer> writer_;
};

}  // namespace mqttws
