// One broker message as the clients it goes to receive it (docs/protocol.md, "message" and
// "Binary frames"): rendered once per message and finished per recipient with only the fields
// that differ (qos, msgid, seq, dup).
// Thread safety: a message_body is built on the engine's thread and then only read; its lazily
// built renderings are not synchronised, so it stays on that thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mqttws {

// What differs per recipient of one broker message.
struct delivery_fields {
    std::uint8_t qos = 0;
    std::uint64_t msgid = 0;  // written when qos >= 1
    std::uint64_t seq = 0;    // written when non-zero
    bool dup = false;
};

// One broker message, rendered for many recipients: the JSON `message` (or `control`) frame
// without its per-recipient fields, which `finish()` appends, is built once on first use; so is
// the binary frame's fixed part. In JSON the payload is embedded as a JSON value when it is JSON
// text, as a string when it is other UTF-8, and as base64 otherwise. `redelivered` (the broker
// resent it after a reconnect) makes every rendering carry dup.
class message_body {
  public:
    message_body(std::string_view frame_type, std::string topic, std::string payload, bool retain,
                 std::int64_t timestamp_ms, std::size_t max_embed_depth = 32,
                 bool redelivered = false);
    std::string finish(const delivery_fields& fields) const;
    std::string finish_binary(const delivery_fields& fields) const;
    // The JSON frame for recipients with nothing of their own (qos 0, no seq), built once.
    const std::shared_ptr<const std::string>& shared_qos0() const;
    // JSON for use inside a `batch` frame: the same as finish().
    const std::string& topic() const { return topic_; }
    const std::string& payload() const { return payload_; }
    std::size_t size() const { return topic_.size() + payload_.size() + 96; }

  private:
    const std::string& json_prefix() const;

    bool control_;
    std::string topic_;
    std::string payload_;
    bool retain_;
    std::int64_t timestamp_ms_;
    std::size_t max_embed_depth_;
    bool redelivered_;
    mutable std::string prefix_;  // `{"type":…,"topic":…,"payload":…,"retain":…,"timestamp":…`
    mutable std::shared_ptr<const std::string> shared_qos0_;
};

// {"type":"batch","messages":[…]} from finished `message` frames.
std::string encode_batch(const std::vector<std::string>& messages);

}  // namespace mqttws
